//! Node identity: one ed25519 key per node.
//!
//! The same key signs application messages (ed25519-dalek) and, converted
//! through `libp2p-identity`, authenticates the node's libp2p connections, so
//! a [`NodeId`] and a libp2p `PeerId` name the same party and each can be
//! derived from the other. The key file is 32 raw secret bytes, mode 0600.

use crate::bytes::byte_newtype;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

use libp2p_identity::PeerId;

byte_newtype!(
    /// A node's ed25519 public key: its identity in every protocol message.
    NodeId,
    32
);

byte_newtype!(
    /// An ed25519 signature.
    Signature,
    64
);

impl NodeId {
    /// The libp2p peer id for this key (an identity multihash of the
    /// protobuf-encoded public key).
    pub fn to_peer_id(&self) -> Result<PeerId, IdentityError> {
        let key = libp2p_identity::ed25519::PublicKey::try_from_bytes(&self.0)
            .map_err(|_| IdentityError::NotAPublicKey)?;
        Ok(libp2p_identity::PublicKey::from(key).to_peer_id())
    }

    /// Recovers the ed25519 public key inlined in an ed25519 peer id. Peer ids
    /// of other key types (or hashed ones) have no key to recover.
    pub fn from_peer_id(peer: &PeerId) -> Result<Self, IdentityError> {
        let bytes = peer.to_bytes();
        // multihash: code 0x00 (identity), varint length, then the digest.
        if bytes.len() < 2 || bytes[0] != 0x00 || bytes[1] as usize != bytes.len() - 2 {
            return Err(IdentityError::NotEd25519PeerId);
        }
        let key = libp2p_identity::PublicKey::try_decode_protobuf(&bytes[2..])
            .map_err(|_| IdentityError::NotEd25519PeerId)?
            .try_into_ed25519()
            .map_err(|_| IdentityError::NotEd25519PeerId)?;
        Ok(NodeId(key.to_bytes()))
    }

    /// Checks `signature` over `message` against this key, strictly: a
    /// small-order (weak) key or a non-canonical signature fails, so no
    /// key can be made that verifies messages it never signed, and every
    /// peer's verdict on the same bytes is the same (`verify_strict`, not
    /// the cofactored `verify`, whose batch and single answers may differ).
    #[must_use]
    pub fn verify(&self, message: &[u8], signature: &Signature) -> bool {
        match VerifyingKey::from_bytes(&self.0) {
            Ok(key) => key
                .verify_strict(message, &ed25519_dalek::Signature::from_bytes(&signature.0))
                .is_ok(),
            Err(_) => false,
        }
    }

    /// A short form for tables and logs.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_string()
    }
}

/// A node's signing key.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
}

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "Keypair({:?})", self.node_id())
    }
}

/// The key file's permissions must not let anyone but the owner read it.
const KEY_FILE_MODE: u32 = 0o600;

/// Why a node key could not be loaded, stored or converted.
#[non_exhaustive]
#[derive(Debug, Error)]
pub enum IdentityError {
    /// No key file at this path.
    #[error("no node key at {0}: run `modchain init` to create one")]
    Missing(PathBuf),
    /// The key file exists but cannot be read.
    #[error("cannot read the node key at {path}; check the file's owner and permissions")]
    Unreadable {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The key file is not 32 bytes.
    #[error(
        "the node key at {path} is {len} bytes, expected 32; the file is damaged: restore it from a backup, or move it away and run `modchain init` for a new identity"
    )]
    WrongLength {
        /// The key file.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
    /// The key file is readable by others.
    #[error(
        "the node key at {path} has mode {mode:o}, readable by others; run `chmod 600 {path}` and start again"
    )]
    TooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A key file exists already at this path.
    #[error("a node key already exists at {0}; refusing to overwrite it")]
    Exists(PathBuf),
    /// The key file cannot be written.
    #[error("cannot write the node key at {path}")]
    Unwritable {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// The OS's random source failed.
    #[error("the operating system's random source failed: {0}")]
    Randomness(String),
    /// The bytes are not an ed25519 public key.
    #[error("bytes are not a valid ed25519 public key")]
    NotAPublicKey,
    /// The libp2p peer id does not carry an ed25519 key.
    #[error("peer id does not carry an inline ed25519 public key")]
    NotEd25519PeerId,
}

impl Keypair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, IdentityError> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| IdentityError::Randomness(e.to_string()))?;
        Ok(Self::from_secret(secret))
    }

    /// A key from 32 secret bytes. Tests and the simulator derive these from a seed.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Keypair {
            signing: SigningKey::from_bytes(&secret),
        }
    }

    /// A deterministic key for tests and simulations: never use for a real node.
    pub fn from_seed(seed: u64) -> Self {
        let digest =
            blake3::hash(&[b"modchain/test-key/".as_slice(), &seed.to_le_bytes()].concat());
        Self::from_secret(*digest.as_bytes())
    }

    /// The node's id: its public key.
    pub fn node_id(&self) -> NodeId {
        NodeId(self.signing.verifying_key().to_bytes())
    }

    /// Signs `message` (callers add the domain).
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.signing.sign(message).to_bytes())
    }

    /// The 32-byte secret, for writing the key file.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The same key as a libp2p identity, for the swarm.
    pub fn to_libp2p(&self) -> libp2p_identity::Keypair {
        let mut secret = self.signing.to_bytes();
        libp2p_identity::Keypair::ed25519_from_bytes(&mut secret)
            .unwrap_or_else(|_| unreachable!("32 bytes always make an ed25519 secret key"))
    }

    /// The node's libp2p peer id.
    pub fn peer_id(&self) -> PeerId {
        self.to_libp2p().public().to_peer_id()
    }

    /// Reads a key file, refusing one that others can read.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(IdentityError::Missing(path.to_path_buf()));
            }
            Err(source) => {
                return Err(IdentityError::Unreadable {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        check_mode(path, &meta)?;
        let bytes = fs::read(path).map_err(|source| IdentityError::Unreadable {
            path: path.to_path_buf(),
            source,
        })?;
        let secret: [u8; 32] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| IdentityError::WrongLength {
                    path: path.to_path_buf(),
                    len: bytes.len(),
                })?;
        Ok(Self::from_secret(secret))
    }

    /// Writes this key to a new file with mode 0600; never overwrites.
    pub fn save_new(&self, path: &Path) -> Result<(), IdentityError> {
        use std::io::Write;
        let unwritable = |source| IdentityError::Unwritable {
            path: path.to_path_buf(),
            source,
        };
        if path.exists() {
            return Err(IdentityError::Exists(path.to_path_buf()));
        }
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(unwritable)?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(KEY_FILE_MODE);
        }
        let mut file = options.open(path).map_err(unwritable)?;
        file.write_all(&self.signing.to_bytes())
            .map_err(unwritable)?;
        file.sync_all().map_err(unwritable)?;
        Ok(())
    }

    /// Loads the key at `path`, creating it first if there is none.
    pub fn load_or_create(path: &Path) -> Result<Self, IdentityError> {
        match Self::load(path) {
            Err(IdentityError::Missing(_)) => {
                let key = Self::generate()?;
                key.save_new(path)?;
                Ok(key)
            }
            other => other,
        }
    }
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<(), IdentityError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path, _: &fs::Metadata) -> Result<(), IdentityError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("modchain-identity-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn peer_id_and_node_id_convert_both_ways() {
        let key = Keypair::from_seed(7);
        let peer = key.peer_id();
        assert_eq!(key.node_id().to_peer_id().expect("valid key"), peer);
        assert_eq!(
            NodeId::from_peer_id(&peer).expect("ed25519 peer"),
            key.node_id()
        );
    }

    #[test]
    fn signature_checks_from_node_id_alone() {
        let key = Keypair::from_seed(1);
        let sig = key.sign(b"hello");
        let id = NodeId::from_peer_id(&key.peer_id()).expect("ed25519 peer");
        assert!(id.verify(b"hello", &sig));
        assert!(!id.verify(b"hellp", &sig));
        assert!(!Keypair::from_seed(2).node_id().verify(b"hello", &sig));
    }

    #[test]
    fn a_small_order_key_verifies_nothing() {
        // The neutral point as a public key, and the signature (R = neutral
        // point, s = 0): the equation [s]B = R + [k]A holds for every
        // message, so a lax check would let this "key" sign anything.
        let mut neutral = [0u8; 32];
        neutral[0] = 1;
        let mut forged = [0u8; 64];
        forged[0] = 1;
        let weak = NodeId(neutral);
        assert!(!weak.verify(b"any message at all", &Signature(forged)));
        assert!(!weak.verify(b"another", &Signature(forged)));
    }

    #[test]
    fn key_file_round_trip_with_mode_0600() {
        let dir = temp_dir("roundtrip");
        let path = dir.join("node.key");
        let key = Keypair::load_or_create(&path).expect("create");
        let again = Keypair::load_or_create(&path).expect("load");
        assert_eq!(key.node_id(), again.node_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        assert!(matches!(key.save_new(&path), Err(IdentityError::Exists(_))));
    }

    #[test]
    fn bad_key_files_say_what_is_wrong() {
        let dir = temp_dir("bad");
        let missing = dir.join("none.key");
        let err = Keypair::load(&missing).expect_err("missing");
        assert!(err.to_string().contains("modchain init"), "{err}");

        let short = dir.join("short.key");
        Keypair::from_seed(3).save_new(&short).expect("save");
        fs::write(&short, [1u8; 31]).expect("write");
        let err = Keypair::load(&short).expect_err("short");
        assert!(
            matches!(err, IdentityError::WrongLength { len: 31, .. }),
            "{err}"
        );

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let open = dir.join("open.key");
            Keypair::from_seed(4).save_new(&open).expect("save");
            fs::set_permissions(&open, fs::Permissions::from_mode(0o644)).expect("chmod");
            let err = Keypair::load(&open).expect_err("too open");
            assert!(
                matches!(err, IdentityError::TooOpen { mode: 0o644, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
    }
}
