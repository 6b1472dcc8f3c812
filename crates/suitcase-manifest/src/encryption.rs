//! SUIT_Encryption_Info (draft-ietf-suit-firmware-encryption-26 §5): a COSE_Encrypt (or
//! COSE_Encrypt0) with a detached ciphertext, carried in parameter 19.

use crate::cbor::{Kind, Reader, decode_exact};
use crate::codepoints::tag;
use crate::cose::Headers;
use crate::error::Error;
use crate::process::{Component, Platform, Processor, Source};

/// The most recipients one encryption info may carry (one per device or group).
pub const MAX_RECIPIENTS: u64 = 64;

/// A parsed SUIT_Encryption_Info.
#[derive(Clone, Copy, Debug)]
pub struct EncryptionInfo<'a> {
    /// The content-encryption layer's headers (alg, IV).
    pub content: Headers<'a>,
    /// Whether this is a COSE_Encrypt0 (the device already holds the CEK; no recipients).
    pub encrypt0: bool,
    recipients: &'a [u8],
}

/// One COSE_recipient: how one device or group recovers the content key.
#[derive(Clone, Copy, Debug)]
pub struct Recipient<'a> {
    /// The recipient's headers (alg, kid, ephemeral key, salt).
    pub headers: Headers<'a>,
    /// The wrapped content-encryption key.
    pub encrypted_key: &'a [u8],
}

impl<'a> EncryptionInfo<'a> {
    /// Parses a bstr-unwrapped SUIT_Encryption_Info.
    ///
    /// # Errors
    /// [`Error::Malformed`] if it is not a tagged COSE_Encrypt / COSE_Encrypt0 with a nil
    /// ciphertext and well-formed recipients.
    pub fn decode(raw: &'a [u8]) -> Result<Self, Error> {
        decode_exact(raw, "trailing bytes after encryption info", |r| {
            let at = r.position();
            let encrypt0 = match r.tag()? {
                tag::COSE_ENCRYPT => false,
                tag::COSE_ENCRYPT0 => true,
                _ => {
                    return Err(Error::Malformed {
                        at,
                        what: "encryption info must be a tagged COSE_Encrypt or COSE_Encrypt0",
                    });
                }
            };
            r.array_of(
                if encrypt0 { 3 } else { 4 },
                "COSE_Encrypt has the wrong number of fields",
            )?;
            let content = Headers::read(r)?;
            // Firmware-encryption §5: the ciphertext is detached (the payload itself).
            if r.kind()? != Kind::Null {
                return Err(r.malformed("encryption info ciphertext must be nil (detached)"));
            }
            r.null()?;
            let start = r.position();
            if !encrypt0 {
                let n = r.array()?;
                if n == 0 || n > MAX_RECIPIENTS {
                    return Err(r.malformed("COSE_Encrypt needs 1 to 64 recipients"));
                }
                for _ in 0..n {
                    // COSE_recipient = [protected, unprotected, ciphertext]; SUIT uses one layer
                    // of recipients, so nested recipients are refused.
                    r.array_of(
                        3,
                        "COSE_recipient must have three fields (no nested recipients)",
                    )?;
                    Headers::read(r)?;
                    r.bstr()?;
                }
            }
            Ok(Self {
                content,
                encrypt0,
                recipients: r.since(start),
            })
        })
    }

    /// The content-encryption algorithm.
    pub fn algorithm(&self) -> Option<i64> {
        self.content.alg
    }

    /// The recipients (empty for COSE_Encrypt0).
    pub fn recipients(&self) -> impl Iterator<Item = Recipient<'a>> + use<'a> {
        let mut r = Reader::new(self.recipients);
        let n = if self.encrypt0 {
            0
        } else {
            r.array().unwrap_or(0)
        };
        (0..n).map_while(move |_| {
            r.array().ok()?;
            let headers = Headers::read(&mut r).ok()?;
            let encrypted_key = r.bstr().ok()?;
            Some(Recipient {
                headers,
                encrypted_key,
            })
        })
    }
}

/// Key material a device holds for recovering content-encryption keys.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum KeyMaterial {
    /// A 128-bit AES key-encryption key (recipients with A128KW, -3).
    Aes128Kw([u8; 16]),
    /// A 256-bit AES key-encryption key (recipients with A256KW, -5).
    Aes256Kw([u8; 32]),
    /// A static P-256 private key (recipients with ECDH-ES+A128KW -29 / +A256KW -31).
    #[cfg(feature = "es256")]
    P256(p256::SecretKey),
    /// A static X25519 private key (ECDH-ES+AES-KW with an OKP ephemeral key).
    #[cfg(feature = "x25519")]
    X25519([u8; 32]),
    /// An ML-KEM-768 decapsulation key seed (d || z, 64 bytes; suitcase ML-KEM recipients).
    #[cfg(feature = "ml-kem")]
    MlKem768([u8; 64]),
}

/// A device key with its optional key id.
#[derive(Clone, Debug)]
pub struct DecryptionKey<'k> {
    /// If set, only recipients with this kid (or none) are tried with this key.
    pub kid: Option<&'k [u8]>,
    /// The key.
    pub material: KeyMaterial,
}

impl DecryptionKey<'_> {
    /// Recovers the content-encryption key from the first recipient this key can open.
    /// Writes it to `cek` and returns its length.
    ///
    /// # Errors
    /// [`Error::Decrypt`] if no recipient opens with this key (including a wrapped key whose
    /// integrity check fails), [`Error::UnsupportedAlgorithm`] if the only matching recipients
    /// use an algorithm this build does not implement.
    pub fn unwrap_cek(
        &self,
        info: &EncryptionInfo<'_>,
        cek: &mut [u8; 32],
    ) -> Result<usize, Error> {
        let mut unsupported = None;
        for recipient in info.recipients() {
            if crate::cose::kids_conflict(self.kid, recipient.headers.kid) {
                continue;
            }
            let Some(alg) = recipient.headers.alg else {
                continue;
            };
            match unwrap_one(&self.material, alg, &recipient, cek) {
                Ok(Some(n)) => return Ok(n),
                Ok(None) => {}
                Err(Error::UnsupportedAlgorithm { alg }) => unsupported = Some(alg),
                Err(_) => {}
            }
        }
        Err(unsupported.map_or(Error::Decrypt, |alg| Error::UnsupportedAlgorithm { alg }))
    }
}

/// `Ok(None)`: this key does not fit this recipient's algorithm.
fn unwrap_one(
    material: &KeyMaterial,
    alg: i64,
    recipient: &Recipient<'_>,
    cek: &mut [u8; 32],
) -> Result<Option<usize>, Error> {
    use crate::codepoints::alg as a;
    match (alg, material) {
        // Firmware-encryption §6.2.1: "The COSE_recipient structure ... protected header MUST
        // be empty" for AES-KW.
        (a::A128KW, KeyMaterial::Aes128Kw(kek)) => {
            if !recipient.headers.protected.is_empty() {
                return Err(Error::Malformed {
                    at: 0,
                    what: "AES-KW recipient protected header must be empty",
                });
            }
            aes_kw_unwrap(kek, recipient.encrypted_key, cek).map(Some)
        }
        (a::A256KW, KeyMaterial::Aes256Kw(kek)) => {
            if !recipient.headers.protected.is_empty() {
                return Err(Error::Malformed {
                    at: 0,
                    what: "AES-KW recipient protected header must be empty",
                });
            }
            aes_kw_unwrap(kek, recipient.encrypted_key, cek).map(Some)
        }
        #[cfg(feature = "es256")]
        (a::ECDH_ES_A128KW | a::ECDH_ES_A256KW, KeyMaterial::P256(secret)) => {
            match recipient
                .headers
                .ephemeral_key
                .map(crate::key::CoseKey::decode)
            {
                Some(Ok(k)) if k.kty == crate::key::kty::EC2 => {
                    ecdh_p256_unwrap(secret, alg, recipient, cek).map(Some)
                }
                _ => Ok(None),
            }
        }
        #[cfg(feature = "x25519")]
        (a::ECDH_ES_A128KW | a::ECDH_ES_A256KW, KeyMaterial::X25519(secret)) => {
            match recipient
                .headers
                .ephemeral_key
                .map(crate::key::CoseKey::decode)
            {
                Some(Ok(k)) if k.kty == crate::key::kty::OKP => {
                    ecdh_x25519_unwrap(secret, alg, recipient, cek).map(Some)
                }
                _ => Ok(None),
            }
        }
        #[cfg(feature = "ml-kem")]
        (a::SUITCASE_ML_KEM_768_A256KW, KeyMaterial::MlKem768(seed)) => {
            ml_kem_unwrap(seed, alg, recipient, cek).map(Some)
        }
        (a::SUITCASE_ML_KEM_768_A256KW, _) => Ok(None),
        (a::A128KW | a::A256KW | a::ECDH_ES_A128KW | a::ECDH_ES_A256KW, _) => Ok(None),
        _ => Err(Error::UnsupportedAlgorithm { alg }),
    }
}

fn aes_kw_unwrap(kek: &[u8], wrapped: &[u8], cek: &mut [u8; 32]) -> Result<usize, Error> {
    use aes::cipher::KeyInit;
    let mut out = [0u8; 40];
    let n = match kek.len() {
        16 => aes_kw::KwAes128::new_from_slice(kek)
            .map_err(|_| Error::Decrypt)?
            .unwrap_key(wrapped, &mut out)
            .map_err(|_| Error::Decrypt)?
            .len(),
        32 => aes_kw::KwAes256::new_from_slice(kek)
            .map_err(|_| Error::Decrypt)?
            .unwrap_key(wrapped, &mut out)
            .map_err(|_| Error::Decrypt)?
            .len(),
        _ => return Err(Error::Decrypt),
    };
    if n != 16 && n != 32 {
        return Err(Error::Decrypt);
    }
    cek.get_mut(..n)
        .ok_or(Error::Decrypt)?
        .copy_from_slice(out.get(..n).ok_or(Error::Decrypt)?);
    Ok(n)
}

/// ES-DH (firmware-encryption §6.2.2): KEK = HKDF-SHA256(salt, ECDH(Z), COSE_KDF_Context), then
/// AES-KW unwrap.
#[cfg(feature = "es256")]
fn ecdh_p256_unwrap(
    secret: &p256::SecretKey,
    alg: i64,
    recipient: &Recipient<'_>,
    cek: &mut [u8; 32],
) -> Result<usize, Error> {
    let ephemeral = recipient.headers.ephemeral_key.ok_or(Error::Malformed {
        at: 0,
        what: "ECDH-ES recipient has no ephemeral key",
    })?;
    let public = crate::key::p256_public_from_cose(ephemeral)?;
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), public.as_affine());
    derive_and_unwrap(alg, recipient, shared.raw_secret_bytes(), cek)
}

/// ES-DH with an X25519 static key (firmware-encryption §6.2.2 with an OKP ephemeral key).
#[cfg(feature = "x25519")]
fn ecdh_x25519_unwrap(
    secret: &[u8; 32],
    alg: i64,
    recipient: &Recipient<'_>,
    cek: &mut [u8; 32],
) -> Result<usize, Error> {
    let bad = Error::Malformed {
        at: 0,
        what: "ephemeral key must be an OKP X25519 COSE_Key with x",
    };
    let key = crate::key::CoseKey::decode(recipient.headers.ephemeral_key.ok_or(bad)?)?;
    if key.kty != crate::key::kty::OKP || key.crv != Some(crate::key::crv::X25519) {
        return Err(bad);
    }
    let x: [u8; 32] = key.x.and_then(|x| x.try_into().ok()).ok_or(bad)?;
    let shared =
        x25519_dalek::StaticSecret::from(*secret).diffie_hellman(&x25519_dalek::PublicKey::from(x));
    // RFC 7748 §6.1: refuse an all-zero shared secret (a low-order ephemeral point).
    if !shared.was_contributory() {
        return Err(Error::Decrypt);
    }
    derive_and_unwrap(alg, recipient, shared.as_bytes(), cek)
}

/// suitcase ML-KEM recipient: decapsulate, then the same KDF and key wrap as ES-DH.
#[cfg(feature = "ml-kem")]
fn ml_kem_unwrap(
    seed: &[u8; 64],
    alg: i64,
    recipient: &Recipient<'_>,
    cek: &mut [u8; 32],
) -> Result<usize, Error> {
    use ml_kem::Decapsulate;
    let ct = recipient.headers.kem_ciphertext.ok_or(Error::Malformed {
        at: 0,
        what: "ML-KEM recipient has no KEM ciphertext",
    })?;
    let dk = ml_kem::DecapsulationKey::<ml_kem::MlKem768>::from_seed((*seed).into());
    let shared = dk.decapsulate_slice(ct).map_err(|_| Error::Malformed {
        at: 0,
        what: "ML-KEM-768 ciphertext must be 1088 bytes",
    })?;
    derive_and_unwrap(alg, recipient, shared.as_slice(), cek)
}

/// KEK = HKDF-SHA256(salt, IKM = shared secret, info = COSE_KDF_Context), then AES-KW unwrap.
#[cfg(any(feature = "es256", feature = "x25519", feature = "ml-kem"))]
fn derive_and_unwrap(
    alg: i64,
    recipient: &Recipient<'_>,
    shared: &[u8],
    cek: &mut [u8; 32],
) -> Result<usize, Error> {
    let (wrap_alg, kek_len) = kek_for(alg)?;
    let mut info = [0u8; 128];
    let info = kdf_context(wrap_alg, kek_len, recipient.headers.protected, &mut info)?;
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(recipient.headers.salt, shared);
    let mut kek = [0u8; 32];
    let kek = kek.get_mut(..kek_len).ok_or(Error::Decrypt)?;
    hk.expand(info, kek).map_err(|_| Error::Decrypt)?;
    aes_kw_unwrap(kek, recipient.encrypted_key, cek)
}

/// The key-wrap algorithm and KEK length a key-agreement algorithm implies.
///
/// # Errors
/// [`Error::UnsupportedAlgorithm`] for anything else.
pub fn kek_for(alg: i64) -> Result<(i64, usize), Error> {
    use crate::codepoints::alg as a;
    match alg {
        a::ECDH_ES_A128KW => Ok((a::A128KW, 16)),
        a::ECDH_ES_A256KW | a::SUITCASE_ML_KEM_768_A256KW => Ok((a::A256KW, 32)),
        _ => Err(Error::UnsupportedAlgorithm { alg }),
    }
}

/// COSE_KDF_Context (RFC 9053 §5.2) as the firmware-encryption draft fixes it:
/// `[AlgorithmID, [nil,nil,nil], [nil,nil,nil], [keyDataLength, protected, 'SUIT Payload Encryption']]`.
pub fn kdf_context<'b>(
    wrap_alg: i64,
    kek_len: usize,
    recipient_protected: &[u8],
    buf: &'b mut [u8],
) -> Result<&'b [u8], Error> {
    use minicbor::Encoder;
    use minicbor::encode::write::Cursor;
    let too_big = Error::Malformed {
        at: 0,
        what: "recipient protected header too large",
    };
    let mut e = Encoder::new(Cursor::new(&mut *buf));
    let bits = (kek_len * 8) as u64;
    (|| {
        e.array(4)?.i64(wrap_alg)?;
        e.array(3)?.null()?.null()?.null()?;
        e.array(3)?.null()?.null()?.null()?;
        e.array(3)?
            .u64(bits)?
            .bytes(recipient_protected)?
            .bytes(b"SUIT Payload Encryption")?;
        Ok::<_, minicbor::encode::Error<minicbor::encode::write::EndOfSlice>>(())
    })()
    .map_err(|_| too_big)?;
    let n = e.into_writer().position();
    buf.get(..n).ok_or(too_big)
}

/// Where decrypted bytes go.
pub(crate) fn decrypt<'a, P: Platform>(
    processor: &mut Processor<'a, '_, P>,
    to: &Component<'a>,
    info_bytes: &'a [u8],
    source: Source<'a>,
) -> Result<(), Error> {
    let info = EncryptionInfo::decode(info_bytes)?;
    info.content.check_critical()?;
    let alg = info.algorithm().ok_or(Error::Malformed {
        at: 0,
        what: "encryption info has no content algorithm",
    })?;
    let mut cek = [0u8; 32];
    let platform = processor.platform_mut();
    let cek_len = platform
        .content_key(&info, &mut cek)
        .map_err(|_| Error::Decrypt)?;
    let key = cek.get(..cek_len).ok_or(Error::Decrypt)?;
    let iv = info.content.iv.ok_or(Error::Malformed {
        at: 0,
        what: "encryption info has no IV",
    })?;
    let capacity = platform.capacity(to).unwrap_or(0);
    let mut io = Io {
        platform,
        source,
        to: *to,
        capacity,
    };
    let result = run_cipher(&mut io, alg, key, iv, &info);
    zeroize(&mut cek);
    result
}

fn run_cipher(
    io: &mut impl Stream,
    alg: i64,
    key: &[u8],
    iv: &[u8],
    info: &EncryptionInfo<'_>,
) -> Result<(), Error> {
    use crate::codepoints::alg as a;
    match (alg, key.len()) {
        (a::A128GCM, 16) => gcm::<aes::Aes128>(io, key, iv, info),
        (a::A256GCM, 32) => gcm::<aes::Aes256>(io, key, iv, info),
        (a::A128CTR, 16) => ctr_mode::<aes::Aes128>(io, key, iv, info),
        (a::A256CTR, 32) => ctr_mode::<aes::Aes256>(io, key, iv, info),
        (a::A128GCM | a::A256GCM | a::A128CTR | a::A256CTR, _) => Err(Error::Decrypt),
        _ => Err(Error::UnsupportedAlgorithm { alg }),
    }
}

/// Decrypts a whole payload held in memory with a known content key (host tools; the agent
/// streams through the processor instead).
///
/// # Errors
/// [`Error::Decrypt`] for a wrong key or tampered data, [`Error::UnsupportedAlgorithm`] or
/// [`Error::Malformed`] for encryption info this build cannot use.
#[cfg(feature = "alloc")]
pub fn decrypt_payload(
    info_bytes: &[u8],
    cek: &[u8],
    ciphertext: &[u8],
) -> Result<alloc::vec::Vec<u8>, Error> {
    let info = EncryptionInfo::decode(info_bytes)?;
    info.content.check_critical()?;
    let alg = info.algorithm().ok_or(Error::Malformed {
        at: 0,
        what: "encryption info has no content algorithm",
    })?;
    let iv = info.content.iv.ok_or(Error::Malformed {
        at: 0,
        what: "encryption info has no IV",
    })?;
    let mut io = MemoryStream {
        input: ciphertext,
        output: alloc::vec::Vec::new(),
    };
    run_cipher(&mut io, alg, cek, iv, &info)?;
    Ok(io.output)
}

#[cfg(feature = "alloc")]
struct MemoryStream<'i> {
    input: &'i [u8],
    output: alloc::vec::Vec<u8>,
}

#[cfg(feature = "alloc")]
impl Stream for MemoryStream<'_> {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        Ok(copy_from(self.input, offset, buf))
    }
    fn begin(&mut self, _size: Option<u64>) -> Result<(), Error> {
        self.output.clear();
        Ok(())
    }
    fn write(&mut self, _offset: u64, data: &[u8]) -> Result<(), Error> {
        self.output.extend_from_slice(data);
        Ok(())
    }
    fn end(&mut self) -> Result<(), Error> {
        Ok(())
    }
    fn capacity(&self) -> u64 {
        u64::MAX
    }
    fn too_large(&self, size: u64) -> Error {
        Error::TooLarge {
            component: 0,
            size,
            capacity: u64::MAX,
        }
    }
}

fn copy_from(bytes: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let rest = bytes.get(start..).unwrap_or_default();
    let n = rest.len().min(buf.len());
    if let (Some(dst), Some(src)) = (buf.get_mut(..n), rest.get(..n)) {
        dst.copy_from_slice(src);
    }
    n
}

/// Ciphertext in, plaintext out, in bounded chunks.
trait Stream {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error>;
    fn begin(&mut self, size: Option<u64>) -> Result<(), Error>;
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Error>;
    fn end(&mut self) -> Result<(), Error>;
    fn capacity(&self) -> u64;
    fn too_large(&self, size: u64) -> Error;
}

fn zeroize(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // Volatile-free best effort; the CEK never leaves this stack frame otherwise.
        *b = 0;
    }
    core::hint::black_box(buf);
}

/// Chunked access to the ciphertext and the destination component.
struct Io<'x, 'a, P: Platform> {
    platform: &'x mut P,
    source: Source<'a>,
    to: Component<'a>,
    capacity: u64,
}

impl<P: Platform> Io<'_, '_, P> {
    fn storage(&self) -> Error {
        Error::Platform {
            op: crate::Operation::Storage,
            component: self.to.index,
        }
    }
}

impl<P: Platform> Stream for Io<'_, '_, P> {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        match self.source {
            Source::Bytes(bytes) => Ok(copy_from(bytes, offset, buf)),
            Source::Component(c) => {
                self.platform
                    .read(&c, offset, buf)
                    .map_err(|_| Error::Platform {
                        op: crate::Operation::Storage,
                        component: c.index,
                    })
            }
        }
    }
    fn begin(&mut self, size: Option<u64>) -> Result<(), Error> {
        let to = self.to;
        self.platform
            .write_begin(&to, size)
            .map_err(|_| self.storage())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Error> {
        let to = self.to;
        self.platform
            .write(&to, offset, data)
            .map_err(|_| self.storage())
    }
    fn end(&mut self) -> Result<(), Error> {
        let to = self.to;
        self.platform.write_end(&to).map_err(|_| self.storage())
    }
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn too_large(&self, size: u64) -> Error {
        Error::TooLarge {
            component: self.to.index,
            size,
            capacity: self.capacity,
        }
    }
}

const CHUNK: usize = 256;
const TAG: usize = 16;

/// AES-GCM (NIST SP 800-38D) in two passes over the ciphertext: first GHASH and the tag check,
/// then CTR decryption into the destination. Nothing is written unless the tag verifies, and
/// memory stays constant in the payload size. Composed from RustCrypto's `aes`, `ghash` and
/// `ctr` because `aes-gcm` only decrypts whole in-memory buffers; the tests check it against
/// `aes-gcm`.
fn gcm<C>(
    io: &mut impl Stream,
    key: &[u8],
    iv: &[u8],
    info: &EncryptionInfo<'_>,
) -> Result<(), Error>
where
    C: aes::cipher::BlockCipherEncrypt
        + aes::cipher::KeyInit
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>
        + Clone,
{
    use aes::cipher::{KeyIvInit, StreamCipher};
    use ghash::universal_hash::UniversalHash;
    // Firmware-encryption §6.1: for AES-GCM the alg is protected; a 96-bit IV (RFC 9053 §4.1).
    if !info.content.alg_protected {
        return Err(Error::Malformed {
            at: 0,
            what: "AES-GCM alg must be a protected header",
        });
    }
    let iv: &[u8; 12] = iv.try_into().map_err(|_| Error::Malformed {
        at: 0,
        what: "AES-GCM IV must be 12 bytes",
    })?;
    let cipher = C::new_from_slice(key).map_err(|_| Error::Decrypt)?;
    let mut h = ghash::Block::default();
    cipher.encrypt_block(&mut h);
    let mut j0 = ghash::Block::default();
    j0.get_mut(..12).ok_or(Error::Decrypt)?.copy_from_slice(iv);
    *j0.get_mut(15).ok_or(Error::Decrypt)? = 1;
    let mut tag_mask = j0;
    cipher.encrypt_block(&mut tag_mask);

    // Enc_structure = ["Encrypt" / "Encrypt0", protected, external_aad] (RFC 9052 §5.3).
    let mut aad_buf = [0u8; 160];
    let aad = enc_structure(info, &mut aad_buf)?;

    // Pass 1: GHASH(AAD || C) and the tag, holding back the last 16 bytes (the tag).
    let mut ghash = ghash::GHash::new(&h);
    ghash.update_padded(aad);
    let mut blocks = BlockFeeder::default();
    let mut tail = [0u8; TAG];
    let mut tail_len = 0usize;
    let mut total = 0u64;
    let mut buf = [0u8; CHUNK];
    loop {
        let n = io.read(total + tail_len as u64, &mut buf)?;
        if n == 0 {
            break;
        }
        hold_back(
            &mut tail,
            &mut tail_len,
            buf.get(..n).unwrap_or_default(),
            |emitted| {
                blocks.feed(&mut ghash, emitted);
                total += emitted.len() as u64;
            },
        );
    }
    if tail_len != TAG {
        return Err(Error::Decrypt);
    }
    if total > io.capacity() {
        return Err(io.too_large(total));
    }
    blocks.finish(&mut ghash);
    let mut lengths = ghash::Block::default();
    lengths
        .get_mut(..8)
        .ok_or(Error::Decrypt)?
        .copy_from_slice(&((aad.len() as u64) * 8).to_be_bytes());
    lengths
        .get_mut(8..)
        .ok_or(Error::Decrypt)?
        .copy_from_slice(&(total * 8).to_be_bytes());
    ghash.update(&[lengths]);
    let mut expected = ghash.finalize();
    for (e, m) in expected.iter_mut().zip(tag_mask.iter()) {
        *e ^= m;
    }
    // Constant-time tag comparison; on failure nothing has been written.
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_slice(),
        &tail[..],
    )) {
        return Err(Error::Decrypt);
    }

    // Pass 2: CTR from inc32(J0) (SP 800-38D §7.2), streamed into the destination.
    let mut counter = j0;
    *counter.get_mut(15).ok_or(Error::Decrypt)? = 2;
    let mut ctr = ctr::Ctr32BE::<C>::new_from_slices(key, &counter).map_err(|_| Error::Decrypt)?;
    io.begin(Some(total))?;
    let mut offset = 0u64;
    while offset < total {
        let want = usize::try_from(total - offset).unwrap_or(CHUNK).min(CHUNK);
        let chunk = buf.get_mut(..want).unwrap_or_default();
        let n = io.read(offset, chunk)?;
        if n == 0 {
            return Err(Error::Decrypt);
        }
        let chunk = chunk.get_mut(..n).unwrap_or_default();
        ctr.apply_keystream(chunk);
        io.write(offset, chunk)?;
        offset += n as u64;
    }
    io.end()
}

/// AES-CTR (RFC 9459): the counter starts at the full 16-byte IV. No integrity of its own: the
/// manifest must check the plaintext with image-match (firmware-encryption §8).
fn ctr_mode<C>(
    io: &mut impl Stream,
    key: &[u8],
    iv: &[u8],
    info: &EncryptionInfo<'_>,
) -> Result<(), Error>
where
    C: aes::cipher::BlockCipherEncrypt
        + aes::cipher::KeyInit
        + aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
{
    use aes::cipher::{KeyIvInit, StreamCipher};
    // RFC 9459 §4: with AES-CTR "the protected header MUST be a zero-length byte string".
    if !info.content.protected.is_empty() {
        return Err(Error::Malformed {
            at: 0,
            what: "AES-CTR protected header must be empty",
        });
    }
    let mut ctr = ctr::Ctr128BE::<C>::new_from_slices(key, iv).map_err(|_| Error::Malformed {
        at: 0,
        what: "AES-CTR IV must be 16 bytes",
    })?;
    io.begin(None)?;
    let mut buf = [0u8; CHUNK];
    let mut offset = 0u64;
    loop {
        let n = io.read(offset, &mut buf)?;
        if n == 0 {
            break;
        }
        if offset + n as u64 > io.capacity() {
            return Err(io.too_large(offset + n as u64));
        }
        let chunk = buf.get_mut(..n).unwrap_or_default();
        ctr.apply_keystream(chunk);
        io.write(offset, chunk)?;
        offset += n as u64;
    }
    io.end()
}

fn enc_structure<'b>(info: &EncryptionInfo<'_>, buf: &'b mut [u8]) -> Result<&'b [u8], Error> {
    use minicbor::Encoder;
    use minicbor::encode::write::Cursor;
    let too_big = Error::Malformed {
        at: 0,
        what: "protected header too large",
    };
    let context = if info.encrypt0 { "Encrypt0" } else { "Encrypt" };
    let mut e = Encoder::new(Cursor::new(&mut *buf));
    (|| {
        e.array(3)?
            .str(context)?
            .bytes(info.content.protected)?
            .bytes(&[])?;
        Ok::<_, minicbor::encode::Error<minicbor::encode::write::EndOfSlice>>(())
    })()
    .map_err(|_| too_big)?;
    let n = e.into_writer().position();
    buf.get(..n).ok_or(too_big)
}

/// Feeds `data` through, keeping its last 16 bytes back in `tail` and passing the rest to
/// `emit`, so that a trailing authentication tag is never treated as ciphertext.
fn hold_back(tail: &mut [u8; TAG], tail_len: &mut usize, data: &[u8], mut emit: impl FnMut(&[u8])) {
    let total = *tail_len + data.len();
    if total <= TAG {
        if let Some(dst) = tail.get_mut(*tail_len..total) {
            dst.copy_from_slice(data);
        }
        *tail_len = total;
        return;
    }
    let release = total - TAG;
    let from_tail = release.min(*tail_len);
    emit(tail.get(..from_tail).unwrap_or_default());
    let from_data = release - from_tail;
    emit(data.get(..from_data).unwrap_or_default());
    // New tail: what is left of the old tail, then the rest of data.
    let mut next = [0u8; TAG];
    let old_rest = tail.get(from_tail..*tail_len).unwrap_or_default();
    let data_rest = data.get(from_data..).unwrap_or_default();
    for (d, s) in next.iter_mut().zip(old_rest.iter().chain(data_rest)) {
        *d = *s;
    }
    *tail = next;
    *tail_len = TAG;
}

/// Buffers bytes into whole 16-byte blocks for GHASH.
#[derive(Default)]
struct BlockFeeder {
    buf: [u8; TAG],
    len: usize,
}

impl BlockFeeder {
    fn feed(&mut self, ghash: &mut ghash::GHash, mut data: &[u8]) {
        use ghash::universal_hash::UniversalHash;
        while !data.is_empty() {
            let take = (TAG - self.len).min(data.len());
            if let (Some(dst), Some(src)) = (
                self.buf.get_mut(self.len..self.len + take),
                data.get(..take),
            ) {
                dst.copy_from_slice(src);
            }
            self.len += take;
            data = data.get(take..).unwrap_or_default();
            if self.len == TAG {
                ghash.update(&[ghash::Block::from(self.buf)]);
                self.len = 0;
            }
        }
    }

    fn finish(&mut self, ghash: &mut ghash::GHash) {
        use ghash::universal_hash::UniversalHash;
        if self.len > 0 {
            ghash.update_padded(self.buf.get(..self.len).unwrap_or_default());
            self.len = 0;
        }
    }
}

/// A set of device keys (host builds), tried in order.
#[cfg(feature = "alloc")]
#[derive(Clone, Debug, Default)]
pub struct DeviceKeys {
    /// `(kid, key)` pairs.
    pub keys: alloc::vec::Vec<(Option<alloc::vec::Vec<u8>>, KeyMaterial)>,
}

#[cfg(feature = "alloc")]
impl DeviceKeys {
    /// The first content key any device key recovers.
    ///
    /// # Errors
    /// [`PlatformError::Failed`] if none does.
    pub fn content_key(
        &self,
        info: &EncryptionInfo<'_>,
        cek: &mut [u8; 32],
    ) -> Result<usize, crate::PlatformError> {
        for (kid, material) in &self.keys {
            let key = DecryptionKey {
                kid: kid.as_deref(),
                material: material.clone(),
            };
            if let Ok(n) = key.unwrap_cek(info, cek) {
                return Ok(n);
            }
        }
        Err(crate::PlatformError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_back_keeps_the_last_16_bytes() {
        let data: [u8; 40] = core::array::from_fn(|i| u8::try_from(i).unwrap());
        for split in [1usize, 5, 16, 17, 39] {
            let mut tail = [0u8; TAG];
            let mut len = 0;
            let mut out = [0u8; 40];
            let mut n = 0;
            for part in [&data[..split], &data[split..]] {
                hold_back(&mut tail, &mut len, part, |e| {
                    out[n..n + e.len()].copy_from_slice(e);
                    n += e.len();
                });
            }
            assert_eq!(n, 24, "split {split}");
            assert_eq!(&out[..24], &data[..24]);
            assert_eq!(&tail[..], &data[24..]);
        }
    }

    #[test]
    fn kdf_context_matches_the_draft_example() {
        // a128kw-kdf-context.diag with protected << {1: -29} >> = h'a101381c'
        let mut buf = [0u8; 128];
        let ctx = kdf_context(-3, 16, &[0xa1, 0x01, 0x38, 0x1c], &mut buf).unwrap();
        assert_eq!(ctx[0], 0x84);
        assert_eq!(ctx[1], 0x22); // -3
        assert_eq!(
            &ctx[2..10],
            &[0x83, 0xf6, 0xf6, 0xf6, 0x83, 0xf6, 0xf6, 0xf6]
        );
        assert_eq!(&ctx[10..13], &[0x83, 0x18, 0x80]); // [128, ...
        assert_eq!(&ctx[13..18], &[0x44, 0xa1, 0x01, 0x38, 0x1c]);
        assert_eq!(&ctx[18..], b"\x57SUIT Payload Encryption");
    }
}
