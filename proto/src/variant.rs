//! The tag postcard writes for an enum variant, looked up by the variant's name.
//!
//! The hand-written fast paths (the borrowed message forms and the in-place readers) must
//! write and recognise the same tag as the derived encoding. Serde numbers variants in
//! declaration order, and the derived `Deserialize` of every enum hands its variant names to
//! the deserializer; [`index`] asks for them, so a fast path names its variant instead of
//! copying a number that silently goes stale when a variant is added before it.

use serde::de::{self, Deserialize, Deserializer, Visitor};
use std::sync::atomic::{AtomicU32, Ordering};

/// The position serde gives the variant `name` of the enum `E`, which is the tag postcard
/// writes for it; `None` if `E` is not an enum or has no such variant.
pub fn index<'de, E: Deserialize<'de>>(name: &str) -> Option<u32> {
    let position = names::<E>().iter().position(|v| *v == name)?;
    u32::try_from(position).ok()
}

/// The names of the variants of the enum `E`, in the order of their tags (empty if `E` is
/// not an enum).
pub fn names<'de, E: Deserialize<'de>>() -> &'static [&'static str] {
    let mut names = Names(None);
    // The deserializer only records the variant names and then refuses to go on.
    let _ = E::deserialize(&mut names);
    names.0.unwrap_or_default()
}

/// The tag of the variant `name` of `E`, for a fast path that must write or recognise what
/// the derived encoding does; keep it in a [`Tag`] so the names are looked up once. Were the
/// name wrong (the fast paths' tests would fail), it is a tag no variant has: the in-place
/// readers then leave every frame to the derived decoder instead of misreading one.
pub fn tag<'de, E: Deserialize<'de>>(name: &str) -> u32 {
    index::<E>(name).unwrap_or(u32::MAX)
}

/// What [`Tag`] holds before its first read.
const UNREAD: u32 = u32::MAX;

/// A variant's tag for a fast path: looked up by name ([`tag`]) the first time it is read and
/// kept, so every later read is one load and a branch, where a `LazyLock` goes through its
/// `Once` each time. Two threads reading it first both look it up, and store the same value.
#[derive(Debug)]
pub struct Tag {
    /// The tag, or [`UNREAD`].
    value: AtomicU32,
    /// Finds it: `|| tag::<E>("Name")`.
    lookup: fn() -> u32,
}

impl Tag {
    /// A tag found by `lookup` on first read.
    pub const fn new(lookup: fn() -> u32) -> Self {
        Self {
            value: AtomicU32::new(UNREAD),
            lookup,
        }
    }

    /// The tag.
    #[inline]
    pub fn get(&self) -> u32 {
        match self.value.load(Ordering::Relaxed) {
            UNREAD => self.look_up(),
            tag => tag,
        }
    }

    #[cold]
    fn look_up(&self) -> u32 {
        // A name no variant has gives UNREAD - 1, which no variant has either.
        let tag = (self.lookup)().min(UNREAD - 1);
        self.value.store(tag, Ordering::Relaxed);
        tag
    }
}

/// Captures the variant names an enum's derived `Deserialize` passes to `deserialize_enum`.
struct Names(Option<&'static [&'static str]>);

/// Why [`Names`] stopped; never seen outside this module.
#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("variant names captured")
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for &mut Names {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        self.0 = Some(variants);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Serialize;

    #[derive(Serialize, serde::Deserialize)]
    enum Sample {
        First,
        Second(u8),
        Third { x: u8 },
    }

    #[test]
    fn indexes_are_the_tags_postcard_writes() {
        for (name, value) in [
            ("First", Sample::First),
            ("Second", Sample::Second(7)),
            ("Third", Sample::Third { x: 7 }),
        ] {
            let tag = postcard::to_allocvec(&value).unwrap()[0];
            assert_eq!(index::<Sample>(name), Some(u32::from(tag)), "{name}");
        }
        assert_eq!(index::<Sample>("Fourth"), None);
        assert_eq!(index::<u32>("First"), None);
        assert_eq!(tag::<Sample>("Third"), 2);
        assert_eq!(tag::<Sample>("Fourth"), u32::MAX);
        static THIRD: Tag = Tag::new(|| tag::<Sample>("Third"));
        static MISSING: Tag = Tag::new(|| tag::<Sample>("Fourth"));
        assert_eq!((THIRD.get(), THIRD.get()), (2, 2));
        assert_eq!((MISSING.get(), MISSING.get()), (UNREAD - 1, UNREAD - 1));
    }
}
