//! Signing keys generated at run time (no key file is committed), with the JWK an issuer
//! publishes for each. Shared by the tests and the `verify_bench` example.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};

pub struct Key {
    pub kid: String,
    pub alg: Algorithm,
    pub encoding: EncodingKey,
    pub jwk: Jwk,
}

impl Key {
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

/// A 2048-bit RSA key for RS256 (what GitHub's issuer uses).
pub fn rsa_key(kid: &str) -> Key {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let pkcs8 = pair.as_der().unwrap();
    key(
        kid,
        Algorithm::RS256,
        EncodingKey::from_rsa_der(&pkcs1_from_pkcs8(pkcs8.as_ref())),
    )
}

/// A P-256 key for ES256.
pub fn ec_key(kid: &str) -> Key {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    key(
        kid,
        Algorithm::ES256,
        EncodingKey::from_ec_der(pkcs8.as_ref()),
    )
}

fn key(kid: &str, alg: Algorithm, encoding: EncodingKey) -> Key {
    let mut jwk = Jwk::from_encoding_key(&encoding, alg).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    Key {
        kid: kid.to_string(),
        alg,
        encoding,
        jwk,
    }
}

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> (u8, &[u8], &[u8]) {
    let (len, header) = match input[1] {
        l if l < 0x80 => (l as usize, 2),
        l => {
            let n = (l & 0x7f) as usize;
            let len = input[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (len, 2 + n)
        }
    };
    (
        input[0],
        &input[header..header + len],
        &input[header + len..],
    )
}

/// jsonwebtoken's RSA keys are PKCS#1; aws-lc-rs generates PKCS#8
/// (`SEQUENCE { version, algorithm, privateKey OCTET STRING }`): take the inner key.
fn pkcs1_from_pkcs8(pkcs8: &[u8]) -> Vec<u8> {
    let (_, info, _) = der(pkcs8);
    let (_, _, rest) = der(info);
    let (_, _, rest) = der(rest);
    let (tag, key, _) = der(rest);
    assert_eq!(tag, 0x04, "privateKey is an OCTET STRING");
    key.to_vec()
}
