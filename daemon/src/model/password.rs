//! Server-side password generation from a [`PasswordSpec`], with the operating system's CSPRNG.

use crate::error::LockboxError;
use crate::model::PasswordSpec;
use crate::random::fill_random;
use zeroize::Zeroizing;

/// Punctuation characters a password may use.
pub const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
/// Length when the specification leaves it at 0.
pub const DEFAULT_LENGTH: u32 = 36;
/// Longest password.
pub const MAX_LENGTH: u32 = 256;

fn invalid(msg: String) -> LockboxError {
    LockboxError::InvalidArgument(msg)
}

/// The character classes a specification allows, each non-empty; checks the specification.
pub fn classes(spec: &PasswordSpec) -> Result<Vec<Vec<u8>>, LockboxError> {
    if spec.length > MAX_LENGTH {
        return Err(invalid(format!(
            "password_payload_specification.length: at most {MAX_LENGTH}, got {}",
            spec.length
        )));
    }
    if !spec.included_punctuation.is_empty() && !spec.excluded_punctuation.is_empty() {
        return Err(invalid(
            "password_payload_specification: give included_punctuation or excluded_punctuation, not both".into(),
        ));
    }
    for (field, set) in [
        ("included_punctuation", &spec.included_punctuation),
        ("excluded_punctuation", &spec.excluded_punctuation),
    ] {
        if let Some(c) = set.chars().find(|c| !PUNCTUATION.contains(*c)) {
            return Err(invalid(format!(
                "password_payload_specification.{field}: {c:?} is not a punctuation character"
            )));
        }
    }
    let mut classes = Vec::new();
    if spec.include_uppercase {
        classes.push((b'A'..=b'Z').collect());
    }
    if spec.include_lowercase {
        classes.push((b'a'..=b'z').collect());
    }
    if spec.include_digits {
        classes.push((b'0'..=b'9').collect());
    }
    if spec.include_punctuation {
        let punct: Vec<u8> = PUNCTUATION
            .bytes()
            .filter(|b| {
                let c = char::from(*b);
                (spec.included_punctuation.is_empty() || spec.included_punctuation.contains(c))
                    && !spec.excluded_punctuation.contains(c)
            })
            .collect();
        if !punct.is_empty() {
            classes.push(punct);
        }
    }
    if classes.is_empty() {
        return Err(invalid(
            "password_payload_specification: no characters are allowed; include at least one class"
                .into(),
        ));
    }
    let length = effective_length(spec);
    if (length as usize) < classes.len() {
        return Err(invalid(format!(
            "password_payload_specification.length: {length} is shorter than the {} character classes it must include",
            classes.len()
        )));
    }
    Ok(classes)
}

fn effective_length(spec: &PasswordSpec) -> u32 {
    if spec.length == 0 {
        DEFAULT_LENGTH
    } else {
        spec.length
    }
}

/// A uniformly random index below `n` (rejection sampling, no modulo bias).
fn below(n: usize) -> usize {
    debug_assert!(n > 0 && n <= 256);
    let limit = 256 - 256 % n;
    loop {
        let mut b = [0u8; 1];
        fill_random(&mut b);
        if usize::from(b[0]) < limit {
            return usize::from(b[0]) % n;
        }
    }
}

/// Generates a password with at least one character of every allowed class.
pub fn generate(spec: &PasswordSpec) -> Result<Zeroizing<Vec<u8>>, LockboxError> {
    let classes = classes(spec)?;
    let length = effective_length(spec) as usize;
    let all: Vec<u8> = classes.iter().flatten().copied().collect();
    let mut out = Zeroizing::new(Vec::with_capacity(length));
    for class in &classes {
        out.push(class[below(class.len())]);
    }
    while out.len() < length {
        out.push(all[below(all.len())]);
    }
    // Fisher-Yates, so the guaranteed characters are not always first.
    for i in (1..out.len()).rev() {
        let j = below(i + 1);
        out.swap(i, j);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> PasswordSpec {
        PasswordSpec {
            password_key: "password".into(),
            length: 0,
            include_uppercase: true,
            include_lowercase: true,
            include_digits: true,
            include_punctuation: true,
            included_punctuation: String::new(),
            excluded_punctuation: String::new(),
        }
    }

    #[test]
    fn default_password_has_every_class() {
        for _ in 0..50 {
            let p = generate(&spec()).unwrap();
            assert_eq!(p.len(), 36);
            assert!(p.iter().any(u8::is_ascii_uppercase));
            assert!(p.iter().any(u8::is_ascii_lowercase));
            assert!(p.iter().any(u8::is_ascii_digit));
            assert!(p.iter().any(|b| PUNCTUATION.as_bytes().contains(b)));
        }
    }

    #[test]
    fn punctuation_filters_and_limits() {
        let s = PasswordSpec {
            include_uppercase: false,
            include_lowercase: false,
            include_digits: false,
            included_punctuation: "-_".into(),
            length: 20,
            ..spec()
        };
        let p = generate(&s).unwrap();
        assert!(p.iter().all(|b| *b == b'-' || *b == b'_'));
        let excluded = PasswordSpec {
            excluded_punctuation: PUNCTUATION.into(),
            include_uppercase: false,
            include_lowercase: false,
            include_digits: false,
            ..spec()
        };
        assert!(generate(&excluded).is_err(), "nothing left to draw from");
        assert!(
            generate(&PasswordSpec {
                length: 257,
                ..spec()
            })
            .is_err()
        );
        assert!(
            generate(&PasswordSpec {
                length: 3,
                ..spec()
            })
            .is_err()
        );
        assert!(
            generate(&PasswordSpec {
                included_punctuation: "a".into(),
                ..spec()
            })
            .is_err()
        );
        assert!(
            generate(&PasswordSpec {
                included_punctuation: "-".into(),
                excluded_punctuation: "_".into(),
                ..spec()
            })
            .is_err()
        );
    }
}
