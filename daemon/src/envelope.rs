//! Envelope encryption of payloads.
//!
//! Each version gets a fresh random 256-bit data key (DEK). The entries are encrypted with it
//! (AES-256-GCM) under associated data binding the secret id, the version id and the id of
//! the key that wraps the DEK, so a ciphertext cannot be moved to another secret, version or
//! key. The DEK itself is wrapped by the daemon's service keyring ([`Keyring`]) or by the
//! secret's `lockbox-kms` key.

use crate::error::LockboxError;
use crate::model::Entry;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use lockbox_proto::Wiping;
use zeroize::{Zeroize, Zeroizing};

/// Domain separation of the payload's associated data.
const PAYLOAD_AAD_LABEL: &[u8] = b"lockbox payload v1";
/// Domain separation of a keyring-wrapped DEK's associated data.
const KEYRING_AAD_LABEL: &[u8] = b"lockbox keyring dek v1";
/// Key id bound into the associated data of keyring-wrapped payloads.
pub const KEYRING_KEY_ID: &str = "service-keyring";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Bytes of the operating system's CSPRNG each thread fetches at once.
const RANDOM_POOL: usize = 4096;

/// A thread's unused random bytes: fetched from the kernel a pool at a time, handed out
/// once each and wiped as they are handed out.
struct RandomPool {
    bytes: [u8; RANDOM_POOL],
    used: usize,
}

impl Drop for RandomPool {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

thread_local! {
    static POOL: std::cell::RefCell<RandomPool> = const {
        std::cell::RefCell::new(RandomPool {
            bytes: [0; RANDOM_POOL],
            used: RANDOM_POOL,
        })
    };
}

fn os_random(buf: &mut [u8]) {
    // Without randomness no key can be made safely; refusing to continue is the only answer.
    #[allow(clippy::expect_used)]
    getrandom::getrandom(buf).expect("the operating system's random source failed");
}

/// Fills `buf` from the operating system's CSPRNG. Small requests (keys, nonces, ids) come
/// from a per-thread pool refilled 4 KiB at a time, so a version's five random values
/// (about 70 bytes) cost one system call per fifty or so versions instead of five each.
pub fn fill_random(buf: &mut [u8]) {
    if buf.len() > RANDOM_POOL / 8 {
        return os_random(buf);
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.used + buf.len() > RANDOM_POOL {
            os_random(&mut pool.bytes);
            pool.used = 0;
        }
        let (start, end) = (pool.used, pool.used + buf.len());
        buf.copy_from_slice(&pool.bytes[start..end]);
        pool.bytes[start..end].zeroize();
        pool.used = end;
    });
}

/// A payload data key. Zeroized on drop.
pub struct Dek(Zeroizing<[u8; 32]>);

impl Dek {
    /// A fresh random key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(k.as_mut());
        Self(k)
    }

    /// A key from unwrapped bytes; refuses any length but 32.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LockboxError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            LockboxError::Internal("unwrapped data key has the wrong length".into())
        })?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// The raw key, for wrapping.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    /// The AES-256-GCM cipher of this key (the `aes` crate's `zeroize` feature wipes the
    /// expanded key schedule when the cipher is dropped).
    pub fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

/// Associated data: a label, then each part after its length (big-endian u32). A label and
/// three ids fit in its 128 inline bytes, so the read path builds it on the stack; longer
/// parts go to the heap. Read it as a byte slice.
pub struct Aad {
    inline: [u8; Aad::INLINE],
    len: usize,
    heap: Vec<u8>,
}

impl Aad {
    const INLINE: usize = 128;
}

impl std::ops::Deref for Aad {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.len <= Self::INLINE {
            &self.inline[..self.len]
        } else {
            &self.heap
        }
    }
}

fn aad(label: &[u8], parts: &[&str]) -> Aad {
    let len = label.len() + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
    let mut aad = Aad {
        inline: [0; Aad::INLINE],
        len,
        heap: Vec::new(),
    };
    let out = if len <= Aad::INLINE {
        &mut aad.inline[..len]
    } else {
        aad.heap.resize(len, 0);
        &mut aad.heap[..]
    };
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(label);
    for p in parts {
        // Ids are short; their lengths fit in u32.
        put(&(p.len() as u32).to_be_bytes());
        put(p.as_bytes());
    }
    aad
}

/// `nonce || ciphertext || tag`, encrypted in place in one buffer sized up front, so no
/// copy of the plaintext is left behind in memory the buffer gave back.
fn seal(cipher: &Aes256Gcm, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, LockboxError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce);
    let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    match cipher.encrypt_in_place_detached(&Nonce::from(nonce), aad, &mut out[NONCE_LEN..]) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(out)
        }
        Err(_) => {
            out.zeroize();
            Err(LockboxError::Internal("encryption failed".into()))
        }
    }
}

fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Result<Wiping, LockboxError> {
    let mut plain = Wiping::new(Vec::with_capacity(sealed.len()));
    open_into(cipher, aad, sealed, &mut plain)?;
    Ok(plain)
}

/// Appends the plaintext of `nonce || ciphertext || tag` to `out`, decrypting in place. On
/// failure `out` is left as it was, the bytes it was given wiped.
fn open_into(
    cipher: &Aes256Gcm,
    aad: &[u8],
    sealed: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LockboxError> {
    let (nonce, body) = sealed
        .split_first_chunk::<NONCE_LEN>()
        .and_then(|(nonce, rest)| Some((nonce, rest.split_last_chunk::<TAG_LEN>()?)))
        .ok_or_else(|| LockboxError::Internal("stored ciphertext is truncated".into()))?;
    let (ciphertext, tag) = body;
    let start = out.len();
    // `out` may be an answer buffer holding other plaintexts: it grows by moving and wiping.
    lockbox_proto::bytes::reserve_wiped(out, ciphertext.len());
    out.extend_from_slice(ciphertext);
    let opened = cipher.decrypt_in_place_detached(
        &Nonce::from(*nonce),
        aad,
        &mut out[start..],
        &Tag::from(*tag),
    );
    if opened.is_err() {
        out[start..].zeroize();
        out.truncate(start);
        return Err(LockboxError::Internal(
            "stored payload failed authentication".into(),
        ));
    }
    Ok(())
}

/// Associated data of a payload: its secret, its version and the key that wraps its data
/// key, so a ciphertext cannot be replayed for another version or under another key.
fn payload_aad(secret_id: &str, version_id: &str, wrapping_key_id: &str) -> Aad {
    aad(PAYLOAD_AAD_LABEL, &[secret_id, version_id, wrapping_key_id])
}

/// Associated data for a DEK wrapped by the KMS: secret and version, so a wrapped key cannot
/// be replayed for another version.
pub fn kms_aad_context(secret_id: &str, version_id: &str) -> Aad {
    aad(b"lockbox dek", &[secret_id, version_id])
}

/// Encrypts entries with `dek`.
pub fn seal_entries(
    dek: &Dek,
    secret_id: &str,
    version_id: &str,
    wrapping_key_id: &str,
    entries: &[Entry],
) -> Result<Vec<u8>, LockboxError> {
    seal_entries_with(
        &dek.cipher(),
        secret_id,
        version_id,
        wrapping_key_id,
        entries,
    )
}

/// Encrypts entries with the data key's cipher ([`Dek::cipher`]).
pub fn seal_entries_with(
    dek: &Aes256Gcm,
    secret_id: &str,
    version_id: &str,
    wrapping_key_id: &str,
    entries: &[Entry],
) -> Result<Vec<u8>, LockboxError> {
    // Room for the whole encoding up front (a varint length is at most 10 bytes): a vector
    // that grew would leave copies of the plaintext behind in the memory it gave back.
    let bound = 10
        + entries
            .iter()
            .map(|e| 21 + e.key.len() + e.value.len())
            .sum::<usize>();
    let plain = Wiping::new(
        postcard::to_extend(entries, Vec::with_capacity(bound))
            .map_err(|e| LockboxError::Internal(format!("payload encoding failed: {e}")))?,
    );
    debug_assert!(plain.len() <= bound, "the payload outgrew its bound");
    seal(
        dek,
        &payload_aad(secret_id, version_id, wrapping_key_id),
        &plain,
    )
}

/// Decrypts entries sealed by [`seal_entries`].
pub fn open_entries(
    dek: &Dek,
    secret_id: &str,
    version_id: &str,
    wrapping_key_id: &str,
    ciphertext: &[u8],
) -> Result<OpenedEntries, LockboxError> {
    open_entries_with(
        &dek.cipher(),
        secret_id,
        version_id,
        wrapping_key_id,
        ciphertext,
    )
}

/// Decrypts entries sealed by [`seal_entries`], with the data key's cipher ([`Dek::cipher`]).
pub fn open_entries_with(
    dek: &Aes256Gcm,
    secret_id: &str,
    version_id: &str,
    wrapping_key_id: &str,
    ciphertext: &[u8],
) -> Result<OpenedEntries, LockboxError> {
    let plain = open(
        dek,
        &payload_aad(secret_id, version_id, wrapping_key_id),
        ciphertext,
    )?;
    Ok(OpenedEntries(plain))
}

/// Decrypts entries sealed by [`seal_entries`] with the data key's cipher, appending them to
/// `out` as the wire encodes a `Vec<PayloadEntry>`: what a payload read sends, with no other
/// copy of the plaintext made. On failure `out` is left as it was.
pub fn open_entries_as_sent(
    dek: &Aes256Gcm,
    secret_id: &str,
    version_id: &str,
    wrapping_key_id: &str,
    ciphertext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), LockboxError> {
    let start = out.len();
    let aad = payload_aad(secret_id, version_id, wrapping_key_id);
    open_into(dek, &aad, ciphertext, out)?;
    crate::wire::stored_entries_to_wire(&mut out[start..]).inspect_err(|_| {
        out[start..].zeroize();
        out.truncate(start);
    })
}

/// A version's entries, decrypted but still in their stored encoding. Zeroized on drop.
pub struct OpenedEntries(Wiping);

impl OpenedEntries {
    /// The entries as owned values, to be changed into a new version's.
    pub fn to_entries(&self) -> Result<Vec<Entry>, LockboxError> {
        postcard::from_bytes(&self.0)
            .map_err(|e| LockboxError::Internal(format!("stored payload is unreadable: {e}")))
    }
}

impl std::fmt::Debug for OpenedEntries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OpenedEntries([REDACTED; {}])", self.0.len())
    }
}

/// The daemon's service keyring: a random key, kept wrapped by a `lockbox-kms` key and
/// unwrapped once at start, that wraps the DEKs of secrets without their own KMS key.
pub struct Keyring {
    key: Zeroizing<[u8; 32]>,
    /// The key's expanded schedule, built once.
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keyring([REDACTED])")
    }
}

impl Keyring {
    /// A fresh keyring key.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(k.as_mut());
        Self::new(k)
    }

    fn new(key: Zeroizing<[u8; 32]>) -> Self {
        let cipher = Aes256Gcm::new(key.as_ref().into());
        Self { key, cipher }
    }

    /// A keyring from unwrapped bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, LockboxError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| LockboxError::Internal("unwrapped keyring has the wrong length".into()))?;
        Ok(Self::new(Zeroizing::new(arr)))
    }

    /// The raw key, for wrapping by the KMS.
    pub fn expose(&self) -> &[u8; 32] {
        &self.key
    }

    /// Wraps a DEK for one version.
    pub fn wrap(
        &self,
        dek: &Dek,
        secret_id: &str,
        version_id: &str,
    ) -> Result<Vec<u8>, LockboxError> {
        seal(
            &self.cipher,
            &aad(KEYRING_AAD_LABEL, &[secret_id, version_id]),
            dek.expose(),
        )
    }

    /// Unwraps a DEK wrapped by [`Keyring::wrap`] for the same version.
    pub fn unwrap(
        &self,
        wrapped: &[u8],
        secret_id: &str,
        version_id: &str,
    ) -> Result<Dek, LockboxError> {
        let plain = open(
            &self.cipher,
            &aad(KEYRING_AAD_LABEL, &[secret_id, version_id]),
            wrapped,
        )?;
        Dek::from_bytes(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_random_bytes_are_never_handed_out_twice() {
        let mut seen = std::collections::HashSet::new();
        // Several refills' worth of 16-byte values.
        for _ in 0..(3 * RANDOM_POOL / 16) {
            let mut v = [0u8; 16];
            fill_random(&mut v);
            assert!(seen.insert(v), "a repeated 16-byte random value");
        }
        let mut big = vec![0u8; RANDOM_POOL];
        fill_random(&mut big);
        assert!(big.iter().any(|&b| b != 0));
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                key: "user".into(),
                text: true,
                value: b"alice".to_vec(),
            },
            Entry {
                key: "blob".into(),
                text: false,
                value: vec![0, 1, 2, 255],
            },
        ]
    }

    #[test]
    fn entries_round_trip_and_are_bound_to_their_ids() {
        let dek = Dek::generate();
        let ct = seal_entries(&dek, "s1", "v1", KEYRING_KEY_ID, &entries()).unwrap();
        let opened = open_entries(&dek, "s1", "v1", KEYRING_KEY_ID, &ct).unwrap();
        assert_eq!(opened.to_entries().unwrap(), entries());
        assert!(open_entries(&dek, "s2", "v1", KEYRING_KEY_ID, &ct).is_err());
        assert!(open_entries(&dek, "s1", "v2", KEYRING_KEY_ID, &ct).is_err());
        assert!(open_entries(&dek, "s1", "v1", "abj-other", &ct).is_err());
        assert!(open_entries(&Dek::generate(), "s1", "v1", KEYRING_KEY_ID, &ct).is_err());
    }

    #[test]
    fn entries_open_into_a_buffer_or_leave_it_as_it_was() {
        let dek = Dek::generate();
        let cipher = dek.cipher();
        let ct = seal_entries(&dek, "s1", "v1", KEYRING_KEY_ID, &entries()).unwrap();
        let mut out = b"head".to_vec();
        let aad = |version| payload_aad("s1", version, KEYRING_KEY_ID);
        open_into(&cipher, &aad("v1"), &ct, &mut out).unwrap();
        let stored = postcard::to_allocvec(&entries()).unwrap();
        assert_eq!(out, [&b"head"[..], &stored].concat());

        let mut tampered = ct.clone();
        *tampered.last_mut().unwrap() ^= 1;
        for (sealed, version) in [(&tampered[..], "v1"), (&ct[..], "v2"), (&ct[..27], "v1")] {
            let mut out = b"head".to_vec();
            let err = open_into(&cipher, &aad(version), sealed, &mut out);
            assert!(matches!(err, Err(LockboxError::Internal(_))));
            assert_eq!(out, b"head");
        }
    }

    #[test]
    fn entries_open_as_sent_or_leave_the_buffer_as_it_was() {
        let dek = Dek::generate();
        let cipher = dek.cipher();
        let ct = seal_entries(&dek, "s1", "v1", KEYRING_KEY_ID, &entries()).unwrap();
        let mut out = b"head".to_vec();
        open_entries_as_sent(&cipher, "s1", "v1", KEYRING_KEY_ID, &ct, &mut out).unwrap();
        let mut sent = postcard::to_allocvec(&entries()).unwrap();
        crate::wire::stored_entries_to_wire(&mut sent).unwrap();
        assert_eq!(out, [&b"head"[..], &sent].concat());

        // Authentic, but not entries: refused after decryption, and the plaintext taken back.
        let odd = seal(
            &cipher,
            &payload_aad("s1", "v1", KEYRING_KEY_ID),
            b"\x05odd",
        )
        .unwrap();
        let mut out = b"head".to_vec();
        let err = open_entries_as_sent(&cipher, "s1", "v1", KEYRING_KEY_ID, &odd, &mut out);
        assert!(matches!(err, Err(LockboxError::Internal(_))));
        assert_eq!(out, b"head");
    }

    #[test]
    fn associated_data_is_the_same_on_the_stack_and_on_the_heap() {
        let expected = |label: &[u8], parts: &[&str]| {
            let mut v = label.to_vec();
            for p in parts {
                v.extend_from_slice(&(p.len() as u32).to_be_bytes());
                v.extend_from_slice(p.as_bytes());
            }
            v
        };
        let long = "x".repeat(Aad::INLINE);
        for parts in [&["s1", "v1"][..], &["s1", &long, "k"][..], &[][..]] {
            assert_eq!(&*aad(b"label", parts), &expected(b"label", parts)[..]);
        }
        // Sealed under long ids (heap), opened under the same ids, refused under others.
        let dek = Dek::generate();
        let ct = seal_entries(&dek, &long, "v1", KEYRING_KEY_ID, &entries()).unwrap();
        let opened = open_entries(&dek, &long, "v1", KEYRING_KEY_ID, &ct).unwrap();
        assert_eq!(opened.to_entries().unwrap(), entries());
        assert!(open_entries(&dek, &long[1..], "v1", KEYRING_KEY_ID, &ct).is_err());
    }

    #[test]
    fn keyring_wraps_deks_per_version() {
        let ring = Keyring::generate();
        let dek = Dek::generate();
        let wrapped = ring.wrap(&dek, "s", "v").unwrap();
        assert_eq!(
            ring.unwrap(&wrapped, "s", "v").unwrap().expose(),
            dek.expose()
        );
        assert!(ring.unwrap(&wrapped, "s", "other").is_err());
        assert!(Keyring::generate().unwrap(&wrapped, "s", "v").is_err());
    }

    #[test]
    fn debug_output_hides_values() {
        let e = &entries()[0];
        let shown = format!("{e:?}");
        assert!(!shown.contains("alice"), "{shown}");
        let dek = Dek::generate();
        let ct = seal_entries(&dek, "s1", "v1", KEYRING_KEY_ID, &entries()).unwrap();
        let opened = open_entries(&dek, "s1", "v1", KEYRING_KEY_ID, &ct).unwrap();
        let shown = format!("{opened:?}");
        assert!(!shown.contains("alice"), "{shown}");
        assert_eq!(format!("{:?}", Keyring::generate()), "Keyring([REDACTED])");
    }
}
