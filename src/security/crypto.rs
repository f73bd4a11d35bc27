//! Envelope encryption of users' data keys.
//!
//! Each user has a random 256-bit data key. It is stored wrapped with
//! AES-256-GCM under a key-encryption key (KEK) derived with HKDF-SHA256 from
//! a master key and the row's random salt, with the user's id bound as
//! associated data. The stored text names the master key (by a one-way id), so
//! a rotation can tell which rows are left and `keys status` can count them.
//!
//! The format is a contract with the application, which unwraps data keys in
//! another language: `docs/key-format.md` describes it byte by byte, and a test
//! vector there is checked by `tests/keys.rs`. Only RustCrypto primitives are
//! used here; nothing is hand-written but the framing.
//!
//! Key material never leaves this module's types: master keys and data keys
//! live in `SecretBox`es (zeroized on drop), their `Debug` shows no bytes, and
//! no error message carries them.

use std::fmt;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox};
use serde::Serialize;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

/// What the `algorithm` column says for keys written here.
pub const ALGORITHM: &str = "AES-256-GCM";
/// The stored text starts with this, then the master key id and the payload.
pub const PREFIX: &str = "pathfinder:v1:";
/// HKDF `info` for the key-encryption key.
pub const KEK_INFO: &[u8] = b"pathfinder-db/kek/v1";
/// HKDF `info` for the master key id.
pub const MASTER_KEY_ID_INFO: &[u8] = b"pathfinder-db/master-key-id/v1";

pub const KEY_LEN: usize = 32;
pub const SALT_LEN: usize = 32;
pub const NONCE_LEN: usize = 12;
pub const TAG_LEN: usize = 16;
/// Bytes of the master key id (shown as twice as many hex digits).
pub const MASTER_KEY_ID_LEN: usize = 8;
/// nonce || ciphertext || tag.
const PAYLOAD_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

/// Something went wrong that has nothing to do with the input (the OS random
/// source failed).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CryptoError(String);

/// Why a master key's text was refused. Never contains the text itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyTextError {
    #[error("is not base64 text")]
    NotBase64,
    #[error("is base64 of {0} bytes, not of 32")]
    WrongLength(usize),
}

/// Why a stored data key did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnwrapError {
    #[error("not a pathfinder-db wrapped key ({0})")]
    Format(&'static str),
    #[error("key_salt is not base64 of {SALT_LEN} bytes")]
    Salt,
    #[error("wrapped by master key {stored}, not by the master key given ({given})")]
    OtherMasterKey {
        stored: MasterKeyId,
        given: MasterKeyId,
    },
    /// The tag did not verify: the wrapped key, its salt or the user id was
    /// changed (a key copied from another user's row fails here), or the master
    /// key is not the one the id claims.
    #[error(
        "does not open with master key {0}: the stored key, its salt or its user was changed (a key copied from another user's row fails so)"
    )]
    DoesNotOpen(MasterKeyId),
}

/// A master key's public name: the first 8 bytes of HKDF-SHA256 over the key,
/// in hex. One-way: it tells keys apart without revealing them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MasterKeyId(String);

impl MasterKeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts the 16 lowercase hex digits of an id.
    pub fn parse(text: &str) -> Option<MasterKeyId> {
        (text.len() == 2 * MASTER_KEY_ID_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| MasterKeyId(text.to_string()))
    }
}

impl fmt::Display for MasterKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 256-bit master key and its id.
pub struct MasterKey {
    key: SecretBox<[u8; KEY_LEN]>,
    id: MasterKeyId,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

fn random_bytes(out: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(out)
        .map_err(|e| CryptoError(format!("the operating system's random source failed: {e}")))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// HKDF-SHA256 (RFC 5869) of `ikm` with `salt` and `info`, into `out`. The
/// intermediate pseudorandom key is wiped before it is dropped.
fn hkdf_sha256(salt: Option<&[u8]>, ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let (mut prk, hkdf) = Hkdf::<Sha256>::extract(salt, ikm);
    prk.as_mut_slice().zeroize();
    hkdf.expand(info, out)
        .expect("at most 32 bytes is a valid HKDF-SHA256 output length");
}

impl MasterKey {
    /// Takes ownership of the bytes (already in a zeroizing box).
    pub fn from_secret(key: SecretBox<[u8; KEY_LEN]>) -> MasterKey {
        let mut id = [0u8; MASTER_KEY_ID_LEN];
        hkdf_sha256(None, key.expose_secret(), MASTER_KEY_ID_INFO, &mut id);
        MasterKey {
            key,
            id: MasterKeyId(hex(&id)),
        }
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<MasterKey, CryptoError> {
        let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
        random_bytes(key.expose_secret_mut())?;
        Ok(MasterKey::from_secret(key))
    }

    /// From its text: base64 (standard alphabet, padding optional) of 32 bytes,
    /// surrounding whitespace ignored.
    pub fn from_base64(text: &str) -> Result<MasterKey, KeyTextError> {
        let text = text.trim();
        let decoded = Zeroizing::new(
            STANDARD
                .decode(text)
                .or_else(|_| STANDARD_NO_PAD.decode(text))
                .map_err(|_| KeyTextError::NotBase64)?,
        );
        if decoded.len() != KEY_LEN {
            return Err(KeyTextError::WrongLength(decoded.len()));
        }
        let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
        key.expose_secret_mut().copy_from_slice(&decoded);
        Ok(MasterKey::from_secret(key))
    }

    /// The key as base64 text, for writing a new key file (and nothing else).
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(self.key.expose_secret()))
    }

    pub fn id(&self) -> &MasterKeyId {
        &self.id
    }

    /// The key-encryption key for one row's salt.
    fn kek(&self, salt: &[u8]) -> Aes256Gcm {
        let mut kek = Zeroizing::new([0u8; KEY_LEN]);
        hkdf_sha256(Some(salt), self.key.expose_secret(), KEK_INFO, &mut kek[..]);
        // aes-gcm's `zeroize` feature wipes the expanded key when the cipher drops.
        Aes256Gcm::new_from_slice(&kek[..]).expect("a 32-byte key fits AES-256")
    }
}

/// A user's 256-bit data key, in clear: only ever in memory, wiped on drop.
pub struct DataKey(SecretBox<[u8; KEY_LEN]>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<DataKey, CryptoError> {
        let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
        random_bytes(key.expose_secret_mut())?;
        Ok(DataKey(key))
    }

    pub fn from_secret(key: SecretBox<[u8; KEY_LEN]>) -> DataKey {
        DataKey(key)
    }

    /// The bytes, for the caller that must use them (tests comparing keys).
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }
}

/// A wrapped data key as stored: `key_encrypted` and `key_salt`.
#[derive(Clone, PartialEq, Eq)]
pub struct Wrapped {
    /// `pathfinder:v1:<master key id>:<base64(nonce || ciphertext || tag)>`.
    pub key_encrypted: String,
    /// base64 of the 32-byte HKDF salt.
    pub key_salt: String,
    pub master_key_id: MasterKeyId,
}

impl fmt::Debug for Wrapped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wrapped(master key {})", self.master_key_id)
    }
}

/// The associated data: the stored text's header, then the user's id.
fn associated_data(master_key_id: &MasterKeyId, user_id: &str) -> Vec<u8> {
    format!("{PREFIX}{master_key_id}:{user_id}").into_bytes()
}

/// Wraps `data_key` for `user_id` under `master`, with a fresh salt and nonce.
pub fn wrap(master: &MasterKey, user_id: &str, data_key: &DataKey) -> Result<Wrapped, CryptoError> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    random_bytes(&mut salt)?;
    random_bytes(&mut nonce)?;
    Ok(wrap_with_salt_and_nonce(
        master, user_id, data_key, &salt, &nonce,
    ))
}

/// `wrap` with a given salt and nonce: for test vectors only. A nonce must
/// never be used twice with the same salt and master key.
#[doc(hidden)]
pub fn wrap_with_salt_and_nonce(
    master: &MasterKey,
    user_id: &str,
    data_key: &DataKey,
    salt: &[u8; SALT_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Wrapped {
    let cipher = master.kek(salt);
    let mut buffer = Zeroizing::new(*data_key.expose());
    let tag = cipher
        .encrypt_inout_detached(
            &Nonce::from(*nonce),
            &associated_data(master.id(), user_id),
            (&mut buffer[..]).into(),
        )
        .expect("32 bytes are within AES-GCM's limits");
    let mut payload = Vec::with_capacity(PAYLOAD_LEN);
    payload.extend_from_slice(nonce);
    payload.extend_from_slice(&buffer[..]);
    payload.extend_from_slice(tag.as_slice());
    Wrapped {
        key_encrypted: format!("{PREFIX}{}:{}", master.id(), STANDARD.encode(&payload)),
        key_salt: STANDARD.encode(salt),
        master_key_id: master.id().clone(),
    }
}

/// The master key id a stored key names, and its decoded payload.
fn parse_stored(key_encrypted: &str) -> Result<(MasterKeyId, Vec<u8>), UnwrapError> {
    let rest = key_encrypted
        .strip_prefix("pathfinder:")
        .ok_or(UnwrapError::Format("no \"pathfinder:\" prefix"))?;
    let rest = rest.strip_prefix("v1:").ok_or(UnwrapError::Format(
        "unknown version: this pathfinder-db reads v1",
    ))?;
    let (id, payload) = rest
        .split_once(':')
        .ok_or(UnwrapError::Format("no master key id"))?;
    let id = MasterKeyId::parse(id).ok_or(UnwrapError::Format("malformed master key id"))?;
    let payload = STANDARD
        .decode(payload)
        .map_err(|_| UnwrapError::Format("payload is not base64"))?;
    if payload.len() != PAYLOAD_LEN {
        return Err(UnwrapError::Format("payload is not 60 bytes"));
    }
    Ok((id, payload))
}

/// The format version a stored key's text names (`v1` for
/// `pathfinder:v1:...`), whether or not this build reads it; None when the
/// text is in no pathfinder format. Needs only the text's first characters.
pub fn format_version(key_encrypted: &str) -> Option<&str> {
    let rest = key_encrypted.strip_prefix("pathfinder:")?;
    let version = rest.split(':').next()?;
    (rest.len() > version.len()
        && version.len() >= 2
        && version.starts_with('v')
        && version[1..].bytes().all(|b| b.is_ascii_digit()))
    .then_some(version)
}

/// The master key id in the first characters of a v1 stored key (the
/// prefix and 16 hex digits are enough); None for any other text.
pub fn stored_master_key_id_prefix(header: &str) -> Option<MasterKeyId> {
    let id = header.strip_prefix(PREFIX)?;
    MasterKeyId::parse(id.get(..2 * MASTER_KEY_ID_LEN)?)
}

/// The master key id named by a stored key, if it is in our format.
pub fn stored_master_key_id(key_encrypted: &str) -> Result<MasterKeyId, UnwrapError> {
    parse_stored(key_encrypted).map(|(id, _)| id)
}

/// Opens a stored data key of `user_id` with `master`.
pub fn unwrap(
    master: &MasterKey,
    user_id: &str,
    key_encrypted: &str,
    key_salt: &str,
) -> Result<DataKey, UnwrapError> {
    let (id, payload) = parse_stored(key_encrypted)?;
    if &id != master.id() {
        return Err(UnwrapError::OtherMasterKey {
            stored: id,
            given: master.id().clone(),
        });
    }
    let salt = STANDARD
        .decode(key_salt.trim())
        .map_err(|_| UnwrapError::Salt)?;
    if salt.len() != SALT_LEN {
        return Err(UnwrapError::Salt);
    }
    let (nonce, rest) = payload.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(KEY_LEN);
    let nonce = Nonce::try_from(nonce).expect("12 bytes");
    let tag = Tag::try_from(tag).expect("16 bytes");
    let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
    key.expose_secret_mut().copy_from_slice(ciphertext);
    master
        .kek(&salt)
        .decrypt_inout_detached(
            &nonce,
            &associated_data(&id, user_id),
            (&mut key.expose_secret_mut()[..]).into(),
            &tag,
        )
        .map_err(|_| UnwrapError::DoesNotOpen(id))?;
    Ok(DataKey(key))
}

/// The master keys a command was given, by id.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<MasterKey>,
}

impl Keyring {
    pub fn new() -> Keyring {
        Keyring::default()
    }

    /// Adds a key (a key already present is not added twice).
    pub fn add(&mut self, key: MasterKey) {
        if self.get(key.id()).is_none() {
            self.keys.push(key);
        }
    }

    pub fn get(&self, id: &MasterKeyId) -> Option<&MasterKey> {
        self.keys.iter().find(|k| k.id() == id)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> Vec<&MasterKeyId> {
        self.keys.iter().map(MasterKey::id).collect()
    }

    /// Opens a stored key with whichever of our master keys it names.
    pub fn unwrap(
        &self,
        user_id: &str,
        key_encrypted: &str,
        key_salt: &str,
    ) -> Result<DataKey, UnwrapError> {
        let id = stored_master_key_id(key_encrypted)?;
        match self.get(&id) {
            Some(master) => unwrap(master, user_id, key_encrypted, key_salt),
            None => Err(UnwrapError::OtherMasterKey {
                stored: id,
                given: self
                    .keys
                    .first()
                    .map(|k| k.id().clone())
                    .unwrap_or_else(|| MasterKeyId("none".into())),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_secret(SecretBox::new(Box::new([byte; KEY_LEN])))
    }

    #[test]
    fn wraps_and_unwraps() {
        let master = key(7);
        let dk = DataKey::generate().unwrap();
        let w = wrap(&master, "user-1", &dk).unwrap();
        assert!(w.key_encrypted.starts_with(PREFIX));
        assert!(w.key_encrypted.len() <= 500 && w.key_salt.len() <= 100);
        let back = unwrap(&master, "user-1", &w.key_encrypted, &w.key_salt).unwrap();
        assert_eq!(back.expose(), dk.expose());
    }

    #[test]
    fn another_user_wrong_key_and_tampering_fail() {
        let master = key(7);
        let dk = DataKey::generate().unwrap();
        let w = wrap(&master, "user-1", &dk).unwrap();
        assert!(matches!(
            unwrap(&master, "user-2", &w.key_encrypted, &w.key_salt),
            Err(UnwrapError::DoesNotOpen(_))
        ));
        assert!(matches!(
            unwrap(&key(8), "user-1", &w.key_encrypted, &w.key_salt),
            Err(UnwrapError::OtherMasterKey { .. })
        ));
        let mut other_salt = [0u8; SALT_LEN];
        other_salt[0] = 1;
        assert!(matches!(
            unwrap(
                &master,
                "user-1",
                &w.key_encrypted,
                &STANDARD.encode(other_salt)
            ),
            Err(UnwrapError::DoesNotOpen(_))
        ));
    }

    #[test]
    fn format_versions_are_read_from_the_prefix() {
        assert_eq!(format_version("pathfinder:v1:a6dee423c8"), Some("v1"));
        assert_eq!(format_version("pathfinder:v12:x"), Some("v12"));
        assert_eq!(format_version("pathfinder:v1"), None);
        assert_eq!(format_version("vault:v1:abc"), None);
        assert_eq!(format_version("pathfinder:x1:abc"), None);
    }

    #[test]
    fn debug_shows_no_key_bytes() {
        let master = key(0xab);
        let text = format!("{master:?} {:?}", DataKey::generate().unwrap());
        assert!(!text.contains("171") && !text.contains("ab, ab"), "{text}");
        assert!(text.contains(master.id().as_str()));
    }

    #[test]
    fn master_key_text_round_trips_and_bad_text_is_refused() {
        let master = MasterKey::generate().unwrap();
        let again = MasterKey::from_base64(&master.to_base64()).unwrap();
        assert_eq!(master.id(), again.id());
        assert_eq!(
            MasterKey::from_base64("c2hvcnQ=").unwrap_err(),
            KeyTextError::WrongLength(5)
        );
        assert_eq!(
            MasterKey::from_base64("not base64!").unwrap_err(),
            KeyTextError::NotBase64
        );
    }
}
