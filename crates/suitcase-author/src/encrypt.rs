//! Payload encryption for devices and groups (draft-ietf-suit-firmware-encryption-26): a fresh
//! random content-encryption key (CEK) per payload, the payload encrypted with AES-GCM or
//! AES-CTR, and the CEK wrapped once per recipient in a COSE_Encrypt whose ciphertext is
//! detached (the payload itself).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use p256::elliptic_curve::sec1::ToSec1Point as _;
use suitcase_manifest::build::raw::{array, bstr, int, map, tagged};
use suitcase_manifest::codepoints::{alg, header, tag};
use suitcase_manifest::encryption::{kdf_context, kek_for};
use suitcase_manifest::key::{crv, kty, label};
use zeroize::Zeroizing;

use crate::error::{AuthorError, Result};
use crate::keys::PublicKey;

/// An encrypted payload and the SUIT_Encryption_Info that lets recipients decrypt it.
#[derive(Clone, Debug)]
pub struct Encrypted {
    /// The encoded COSE_Encrypt (parameter 19's content).
    pub info: Vec<u8>,
    /// The ciphertext (with the tag appended for AES-GCM): the bytes to serve.
    pub ciphertext: Vec<u8>,
}

/// Encrypts `plaintext` for `recipients` with `content_alg` (A128GCM, A256GCM, A128CTR,
/// A256CTR). ECDH recipients use `ecdh_alg` (ECDH-ES+A128KW or ECDH-ES+A256KW).
///
/// # Errors
/// [`AuthorError::Release`] for an unsupported algorithm or recipient key, [`AuthorError::Rng`].
pub fn encrypt(
    plaintext: &[u8],
    content_alg: i64,
    ecdh_alg: i64,
    recipients: &[PublicKey],
) -> Result<Encrypted> {
    if recipients.is_empty() {
        return Err(AuthorError::Release(
            "encryption needs at least one recipient".into(),
        ));
    }
    let cek_len = match content_alg {
        alg::A128GCM | alg::A128CTR => 16,
        alg::A256GCM | alg::A256CTR => 32,
        other => {
            return Err(AuthorError::Release(format!(
                "content algorithm {other} is not supported"
            )));
        }
    };
    // Firmware-encryption §5: "a fresh random CEK is REQUIRED per plaintext".
    let mut cek = Zeroizing::new(vec![0u8; cek_len]);
    crate::rng::fill(&mut cek)?;
    let (protected, unprotected, ciphertext) = match content_alg {
        alg::A128GCM | alg::A256GCM => {
            let iv = crate::rng::bytes::<12>()?;
            let protected = map(vec![(int(header::ALG), int(content_alg))]);
            let aad = array(&[
                suitcase_manifest::build::raw::tstr("Encrypt"),
                bstr(&protected),
                bstr(&[]),
            ]);
            let payload = Payload {
                msg: plaintext,
                aad: &aad,
            };
            let nonce = aes_gcm::Nonce::try_from(iv.as_slice()).map_err(|_| AuthorError::Rng)?;
            let ct = if cek_len == 16 {
                aes_gcm::Aes128Gcm::new_from_slice(&cek)
                    .map_err(|_| AuthorError::Rng)?
                    .encrypt(&nonce, payload)
            } else {
                aes_gcm::Aes256Gcm::new_from_slice(&cek)
                    .map_err(|_| AuthorError::Rng)?
                    .encrypt(&nonce, payload)
            }
            .map_err(|_| AuthorError::Release("AES-GCM encryption failed".into()))?;
            (protected, map(vec![(int(header::IV), bstr(&iv))]), ct)
        }
        _ => {
            use aes::cipher::{KeyIvInit, StreamCipher};
            // RFC 9459: for AES-CTR the protected header is empty and alg and IV are unprotected.
            let iv = crate::rng::bytes::<16>()?;
            let mut ct = plaintext.to_vec();
            if cek_len == 16 {
                ctr::Ctr128BE::<aes::Aes128>::new_from_slices(&cek, &iv)
                    .map_err(|_| AuthorError::Rng)?
                    .apply_keystream(&mut ct);
            } else {
                ctr::Ctr128BE::<aes::Aes256>::new_from_slices(&cek, &iv)
                    .map_err(|_| AuthorError::Rng)?
                    .apply_keystream(&mut ct);
            }
            (
                Vec::new(),
                map(vec![
                    (int(header::ALG), int(content_alg)),
                    (int(header::IV), bstr(&iv)),
                ]),
                ct,
            )
        }
    };
    let recipients = recipients
        .iter()
        .map(|r| recipient(r, &cek, ecdh_alg))
        .collect::<Result<Vec<_>>>()?;
    let info = tagged(
        tag::COSE_ENCRYPT,
        &array(&[
            bstr(&protected),
            unprotected,
            vec![0xf6],
            array(&recipients),
        ]),
    );
    Ok(Encrypted { info, ciphertext })
}

fn wrap(kek: &[u8], cek: &[u8]) -> Result<Vec<u8>> {
    use aes::cipher::KeyInit;
    let mut out = vec![0u8; cek.len() + 8];
    let n = match kek.len() {
        16 => aes_kw::KwAes128::new_from_slice(kek)
            .map_err(|_| AuthorError::Rng)?
            .wrap_key(cek, &mut out)
            .map(<[u8]>::len),
        _ => aes_kw::KwAes256::new_from_slice(kek)
            .map_err(|_| AuthorError::Rng)?
            .wrap_key(cek, &mut out)
            .map(<[u8]>::len),
    }
    .map_err(|_| AuthorError::Release("AES key wrap failed".into()))?;
    out.truncate(n);
    Ok(out)
}

fn derive_kek(wrap_alg_of: i64, protected: &[u8], shared: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let (wrap_alg, kek_len) = kek_for(wrap_alg_of)?;
    let mut info = [0u8; 128];
    let info = kdf_context(wrap_alg, kek_len, protected, &mut info)?;
    let mut kek = Zeroizing::new(vec![0u8; kek_len]);
    hkdf::Hkdf::<sha2::Sha256>::new(None, shared)
        .expand(info, &mut kek)
        .map_err(|_| AuthorError::Release("HKDF failed".into()))?;
    Ok(kek)
}

/// One COSE_recipient wrapping `cek` for `key`.
fn recipient(key: &PublicKey, cek: &[u8], ecdh_alg: i64) -> Result<Vec<u8>> {
    let kid = key.kid();
    match key {
        PublicKey::Symmetric {
            alg: a @ (alg::A128KW | alg::A256KW),
            k,
        } => {
            // Firmware-encryption §6.2.1: AES-KW recipients have an empty protected header.
            let unprotected = map(vec![
                (int(header::ALG), int(*a)),
                (int(header::KID), bstr(&kid)),
            ]);
            Ok(array(&[bstr(&[]), unprotected, bstr(&wrap(k, cek)?)]))
        }
        PublicKey::P256(public) => {
            let eph = loop {
                if let Ok(k) = p256::SecretKey::from_slice(&crate::rng::bytes::<32>()?) {
                    break k;
                }
            };
            let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), public.as_affine());
            let point = eph.public_key().to_sec1_point(false);
            let (x, y) = (point.x().map(|x| x.to_vec()), point.y().map(|y| y.to_vec()));
            let (Some(x), Some(y)) = (x, y) else {
                return Err(AuthorError::Rng);
            };
            let ephemeral = map(vec![
                (int(label::KTY), int(kty::EC2)),
                (int(label::CRV_OR_K), int(crv::P256)),
                (int(label::X), bstr(&x)),
                (int(label::Y), bstr(&y)),
            ]);
            es_dh(ecdh_alg, ephemeral, &kid, shared.raw_secret_bytes(), cek)
        }
        PublicKey::X25519(public) => {
            let eph = x25519_dalek::StaticSecret::from(crate::rng::bytes::<32>()?);
            let eph_public = x25519_dalek::PublicKey::from(&eph).to_bytes();
            let shared = eph.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
            if !shared.was_contributory() {
                return Err(AuthorError::Release(
                    "X25519 recipient key is a low-order point".into(),
                ));
            }
            let ephemeral = map(vec![
                (int(label::KTY), int(kty::OKP)),
                (int(label::CRV_OR_K), int(crv::X25519)),
                (int(label::X), bstr(&eph_public)),
            ]);
            es_dh(ecdh_alg, ephemeral, &kid, shared.as_bytes(), cek)
        }
        PublicKey::MlKem768(ek) => {
            let m = crate::rng::bytes::<32>()?;
            let (ct, shared) = ek.encapsulate_deterministic(&m.into());
            let protected = map(vec![(
                int(header::ALG),
                int(alg::SUITCASE_ML_KEM_768_A256KW),
            )]);
            let kek = derive_kek(alg::SUITCASE_ML_KEM_768_A256KW, &protected, &shared)?;
            let unprotected = map(vec![
                (int(header::KID), bstr(&kid)),
                (int(header::SUITCASE_KEM_CIPHERTEXT), bstr(ct.as_slice())),
            ]);
            Ok(array(&[
                bstr(&protected),
                unprotected,
                bstr(&wrap(&kek, cek)?),
            ]))
        }
        other => Err(AuthorError::Release(format!(
            "a {} key cannot receive content keys: use an a128kw/a256kw, p256-ecdh, x25519 or ml-kem-768 key",
            other.kind()
        ))),
    }
}

/// ES-DH recipient (firmware-encryption §6.2.2): protected `{1: ecdh_alg}`, unprotected
/// ephemeral key and kid, the CEK wrapped with the HKDF-derived KEK.
fn es_dh(
    ecdh_alg: i64,
    ephemeral: Vec<u8>,
    kid: &[u8],
    shared: &[u8],
    cek: &[u8],
) -> Result<Vec<u8>> {
    let protected = map(vec![(int(header::ALG), int(ecdh_alg))]);
    let kek = derive_kek(ecdh_alg, &protected, shared)?;
    let unprotected = map(vec![
        (int(header::EPHEMERAL_KEY), ephemeral),
        (int(header::KID), bstr(kid)),
    ]);
    Ok(array(&[
        bstr(&protected),
        unprotected,
        bstr(&wrap(&kek, cek)?),
    ]))
}
