//! Key encoding: parts joined by a zero byte. Ids, names and folder ids never contain one
//! (validation guarantees it), so a prefix of whole parts selects exactly their children.

/// Separator between key parts.
pub const SEP: u8 = 0;

/// `a \0 b \0 …`.
pub fn key(parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len() + 1).sum();
    let mut out = Vec::with_capacity(len);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        out.extend_from_slice(p);
    }
    out
}

/// `a \0 b \0 … \0`: the prefix of every key under these parts.
pub fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = key(parts);
    out.push(SEP);
    out
}

/// The two parts of a `a \0 b` key, as text; `None` for any other shape.
pub fn split_pair(key: &[u8]) -> Option<(String, String)> {
    let at = key.iter().position(|&b| b == SEP)?;
    let (a, b) = (&key[..at], &key[at + 1..]);
    if b.contains(&SEP) {
        return None;
    }
    Some((
        String::from_utf8_lossy(a).into_owned(),
        String::from_utf8_lossy(b).into_owned(),
    ))
}

/// The last part of a key, as text (ids are ASCII).
pub fn last_part(key: &[u8]) -> String {
    let start = key.iter().rposition(|&b| b == SEP).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&key[start..]).into_owned()
}

/// A time as 8 big-endian bytes that sort like the time (offset so negatives sort first).
pub fn time(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`time`].
pub fn parse_time(bytes: &[u8]) -> Option<i64> {
    let arr: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some((u64::from_be_bytes(arr) ^ (1 << 63)) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes() {
        assert_eq!(key(&[b"a", b"bc"]), b"a\0bc");
        assert_eq!(prefix(&[b"a"]), b"a\0");
        assert_eq!(last_part(b"a\0bc"), "bc");
        assert_eq!(last_part(b"solo"), "solo");
        assert_eq!(split_pair(b"s\0v"), Some(("s".into(), "v".into())));
        assert_eq!(split_pair(b"solo"), None);
        assert_eq!(split_pair(b"a\0b\0c"), None);
    }

    #[test]
    fn times_sort_like_numbers() {
        let ts = [-5i64, 0, 1, 1_700_000_000, i64::MAX];
        for w in ts.windows(2) {
            assert!(time(w[0]) < time(w[1]));
        }
        for t in ts {
            assert_eq!(parse_time(&time(t)), Some(t));
        }
    }
}
