//! CoAP device credentials: a DTLS 1.2 PSK identity and key (RFC 7252 §9.1.3.1, PreSharedKey
//! mode, TLS_PSK_WITH_AES_128_CCM_8 of RFC 6655).
//!
//! RFC 8240 §3: a device identifier must not cross the network in clear. The PSK identity is
//! sent in clear in the DTLS handshake (RFC 4279 §2), so it is not the device id but one AES-256
//! block, encrypted under a server key, of the device id's 12 random bytes and 4 random bytes
//! per credential: an observer sees an opaque 24-character string that names no device and
//! that two credentials of one device do not share. The key is derived from the identity with
//! HMAC-SHA-256 under a second server key, so the server stores nothing per device: the one
//! secret is the file `DATA/coap-secret` (mode 0600), which every node serving CoAP needs a
//! copy of. Whoever holds that file can make any device's key, as whoever holds a CA key can
//! make any device's certificate; the database alone gives nothing. A made-up identity
//! decrypts to some id, but its key is unknown to whoever made it up, so its handshake fails
//! (RFC 4279 §2: the Finished messages prove both sides hold the key).
//!
//! Keys are base64url text used as their ASCII bytes, so that `coap-client -k` (libcoap 4.3.1
//! takes no hex key) uses them as printed: 32 characters (192 random bits) by default. tinydtls
//! (Contiki, RIOT, aiocoap's DTLSSocket) holds at most 16 bytes of key and 32 of identity, so a
//! credential for such a device ([`KeyLength::Short`], identity prefix `t1`) has a key of 16
//! characters: 96 bits, which an eavesdropper of a handshake cannot search offline (2^96
//! guesses) but which is below the 112 bits of NIST SP 800-57; use it only for devices whose
//! DTLS stack needs it. The identity's prefix says which length, so the server stores nothing.
//!
//! A credential stops working when its device is decommissioned (checked at every request,
//! as the HTTP API checks its tokens), or for every device when the secret file is replaced.

use std::path::Path;

use aes::cipher::{BlockCipherDecrypt as _, BlockCipherEncrypt as _};
use base64::Engine as _;
use hmac::KeyInit;
use hmac::Mac as _;
use sha2::Sha256;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The file name of the server's CoAP secret in the data directory.
pub(crate) const SECRET_FILE: &str = "coap-secret";

/// A credential's identity starts with one of these (its format's version and key length).
const PREFIX: &str = "c1";
/// See [`PREFIX`]: a 16-character key for tinydtls.
const PREFIX_SHORT: &str = "t1";

/// How long a credential's key is (see the module's description).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyLength {
    /// 32 characters, 192 bits: the default.
    Full,
    /// 16 characters, 96 bits: for DTLS stacks that hold at most 16 bytes (tinydtls).
    Short,
}

/// The server's CoAP secret: two keys derived from the 32 random bytes of its file.
#[derive(Clone)]
pub(crate) struct Secret {
    seal: [u8; 32],
    psk: [u8; 32],
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// A device's CoAP credential, as the device is given it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoapCredential {
    /// The PSK identity (`coap-client -u`): 24 opaque characters, naming no device.
    pub identity: String,
    /// The pre-shared key (`coap-client -k`): 32 characters, whose ASCII bytes are the key.
    pub key: String,
}

/// Writes `bytes` to a new file at `path` (mode 0600), whole, never replacing one there:
/// `AlreadyExists` if it is.
pub(crate) fn create_noclobber(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
    let aside = path.with_extension(format!("tmp-{}", hex::encode(nonce)));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let r = o
        .open(&aside)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::hard_link(&aside, path));
    let _ = std::fs::remove_file(&aside);
    // The new name is durable only once its directory is: without this a power cut right
    // after the first start could lose the key, and the next start would make another one
    // (every device registered with the old one would then refuse this server).
    r.and_then(|()| match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => std::fs::File::open(".")?.sync_all(),
    })
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC takes keys of any length.
    let Ok(mut m) = <HmacSha256 as KeyInit>::new_from_slice(key) else {
        return [0; 32];
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

impl Secret {
    /// Reads `DATA/coap-secret`, creating it (32 random bytes, base64url, mode 0600) if
    /// missing. Two processes creating it at once (`coap-credential` while the server
    /// starts) agree: the file appears whole or not at all (written aside, then hard-linked,
    /// which never replaces), and the one that loses reads the winner's.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Self, crate::ServerError> {
        let file = data_dir.join(SECRET_FILE);
        let bad = |e: &dyn core::fmt::Display| {
            crate::ServerError::Storage(anyhow::anyhow!("CoAP secret {}: {e}", file.display()))
        };
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (secret, _) = crate::auth::new_secret("");
                match create_noclobber(&file, format!("{secret}\n").as_bytes()) {
                    Ok(()) => secret,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        std::fs::read_to_string(&file).map_err(|e| bad(&e))?
                    }
                    Err(e) => return Err(bad(&e)),
                }
            }
            Err(e) => return Err(bad(&e)),
        };
        let master = text.trim();
        if master.len() < 32 {
            return Err(bad(&"shorter than 32 characters"));
        }
        Ok(Self::from_master(master.as_bytes()))
    }

    fn from_master(master: &[u8]) -> Self {
        Self {
            seal: mac(master, &[b"suitcase coap identity v1"]),
            psk: mac(master, &[b"suitcase coap psk v1"]),
        }
    }

    /// A new credential for the device with this id (`dev_` and 24 hex digits).
    pub(crate) fn issue(&self, device_id: &str, len: KeyLength) -> Result<CoapCredential, String> {
        let raw = device_id
            .strip_prefix("dev_")
            .and_then(|h| hex::decode(h).ok())
            .filter(|b| b.len() == 12)
            .ok_or_else(|| {
                format!("device id {device_id:?} is not of the form dev_ and 24 hex digits")
            })?;
        let mut block = [0u8; 16];
        block[..12].copy_from_slice(&raw);
        getrandom::fill(&mut block[12..]).map_err(|e| e.to_string())?;
        let mut block = aes::Block::from(block);
        aes::Aes256::new(&self.seal.into()).encrypt_block(&mut block);
        let prefix = match len {
            KeyLength::Full => PREFIX,
            KeyLength::Short => PREFIX_SHORT,
        };
        let identity = format!(
            "{prefix}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(block)
        );
        let key = self.key_for(identity.as_bytes());
        Ok(CoapCredential { identity, key })
    }

    /// The key of an identity (whether or not it opens): what the DTLS handshake checks.
    pub(crate) fn key_for(&self, identity: &[u8]) -> String {
        let m = mac(&self.psk, &[identity]);
        let bytes = if identity.starts_with(PREFIX_SHORT.as_bytes()) {
            12
        } else {
            24
        };
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.get(..bytes).unwrap_or(&m))
    }

    /// The device id an identity names, if it has the form of one (whether this server
    /// issued it is proved by the handshake: its key).
    pub(crate) fn open(&self, identity: &[u8]) -> Option<String> {
        let b64 = identity
            .strip_prefix(PREFIX.as_bytes())
            .or_else(|| identity.strip_prefix(PREFIX_SHORT.as_bytes()))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(b64)
            .ok()?;
        let block: [u8; 16] = bytes.try_into().ok()?;
        let mut block = aes::Block::from(block);
        aes::Aes256::new(&self.seal.into()).decrypt_block(&mut block);
        Some(format!("dev_{}", hex::encode(block.get(..12)?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes creating DATA/coap-secret at once (the server starting while an
    /// operator runs `coap-credential`) end up with one secret, whole, mode 0600.
    #[test]
    fn concurrent_creation_agrees_on_one_secret() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    sc.spawn(|| {
                        let s = Secret::load_or_create(dir.path()).unwrap();
                        s.key_for(b"c1AAAAAAAAAAAAAAAAAAAAAA")
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no file written aside is left");
    }

    #[test]
    fn an_identity_opens_to_its_device_and_names_it_nowhere() {
        let s = Secret::from_master(b"0123456789abcdef0123456789abcdef");
        let id = "dev_00112233445566778899aabb";
        let a = s.issue(id, KeyLength::Full).unwrap();
        let b = s.issue(id, KeyLength::Full).unwrap();
        assert_ne!(a.identity, b.identity, "a random nonce per credential");
        assert!(a.identity.len() <= 32, "tinydtls' PSK identity limit");
        assert!(!a.identity.contains("00112233"));
        assert_eq!(s.open(a.identity.as_bytes()).as_deref(), Some(id));
        assert_eq!(s.key_for(a.identity.as_bytes()), a.key);
        assert_eq!(a.key.len(), 32);
        let t = s.issue(id, KeyLength::Short).unwrap();
        assert_eq!(t.key.len(), 16, "tinydtls' PSK limit");
        assert_eq!(s.open(t.identity.as_bytes()).as_deref(), Some(id));
        assert_eq!(s.key_for(t.identity.as_bytes()), t.key);
    }

    #[test]
    fn attack_identity_of_another_server_names_another_device() {
        let s = Secret::from_master(b"0123456789abcdef0123456789abcdef");
        let other = Secret::from_master(b"fedcba9876543210fedcba9876543210");
        let id = "dev_00112233445566778899aabb";
        let c = other.issue(id, KeyLength::Full).unwrap();
        assert_ne!(s.open(c.identity.as_bytes()).as_deref(), Some(id));
        assert_ne!(s.key_for(c.identity.as_bytes()), c.key);
        assert_eq!(s.open(b"c1"), None);
        assert_eq!(s.open(id.as_bytes()), None);
    }
}
