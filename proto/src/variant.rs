//! The tag postcard writes for an enum variant, looked up by the variant's name.
//!
//! The hand-written fast paths (the borrowed message forms and the in-place readers) must
//! write and recognise the same tag as the derived encoding. Serde numbers variants in
//! declaration order, and the derived `Deserialize` of every enum hands its variant names to
//! the deserializer; [`index`] asks for them, so a fast path names its variant instead of
//! copying a number that silently goes stale when a variant is added before it.

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The position serde gives the variant `name` of the enum `E`, which is the tag postcard
/// writes for it; `None` if `E` is not an enum or has no such variant.
pub fn index<'de, E: Deserialize<'de>>(name: &str) -> Option<u32> {
    let mut names = Names(None);
    // The deserializer only records the variant names and then refuses to go on.
    let _ = E::deserialize(&mut names);
    let position = names.0?.iter().position(|v| *v == name)?;
    u32::try_from(position).ok()
}

/// The tag of the variant `name` of `E`, for a fast path that must write or recognise what
/// the derived encoding does; keep it in a `LazyLock` so the names are looked up once. Were the
/// name wrong (the fast paths' tests would fail), it is a tag no variant has: the in-place
/// readers then leave every frame to the derived decoder instead of misreading one.
pub fn tag<'de, E: Deserialize<'de>>(name: &str) -> u32 {
    index::<E>(name).unwrap_or(u32::MAX)
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
    }
}
