//! Tokens signed with every supported kind of key, and the attacks on algorithm choice:
//! `alg: none`, an HS256 token "signed" with the RSA public key as secret, a key of another kind.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use herald_hub::auth::{KeyAlgorithm, Verifier};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa-public.pem");

fn claims() -> serde_json::Value {
    serde_json::json!({"mercure": {"publish": ["*"], "subscribe": ["https://ex.com/{id}"]}})
}

fn sign(alg: Algorithm, key: &EncodingKey) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims(), key).unwrap()
}

#[test]
fn rsa_keys_verify_rs_and_ps() {
    let private = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    for (alg, pinned) in [
        (Algorithm::RS256, KeyAlgorithm::RS256),
        (Algorithm::RS512, KeyAlgorithm::RS512),
        (Algorithm::PS256, KeyAlgorithm::PS256),
    ] {
        let token = sign(alg, &private);
        let verifier = Verifier::new(pinned, RSA_PUBLIC).unwrap();
        let c = verifier.verify(&token).unwrap();
        assert!(c.may_publish_to(&["anything"]));
        assert!(c.may_receive_private(&["https://ex.com/1"]));
        // Pinned: the same key refuses another algorithm.
        let other = if pinned == KeyAlgorithm::RS256 {
            KeyAlgorithm::RS512
        } else {
            KeyAlgorithm::RS256
        };
        assert!(Verifier::new(other, RSA_PUBLIC)
            .unwrap()
            .verify(&token)
            .is_err());
    }
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    // The classic confusion attack: use the RSA public key's bytes as an HMAC secret.
    let forged = sign(Algorithm::HS256, &EncodingKey::from_secret(RSA_PUBLIC));
    let verifier = Verifier::new(KeyAlgorithm::RS256, RSA_PUBLIC).unwrap();
    let err = verifier.verify(&forged).unwrap_err();
    assert!(err.to_string().contains("algorithm"), "{err}");
}

#[test]
fn ec_and_ed25519_keys() {
    for (rc_alg, jwt_alg, pinned) in [
        (
            &rcgen::PKCS_ECDSA_P256_SHA256,
            Algorithm::ES256,
            KeyAlgorithm::ES256,
        ),
        (
            &rcgen::PKCS_ECDSA_P384_SHA384,
            Algorithm::ES384,
            KeyAlgorithm::ES384,
        ),
        (&rcgen::PKCS_ED25519, Algorithm::EdDSA, KeyAlgorithm::EdDSA),
    ] {
        let pair = rcgen::KeyPair::generate_for(rc_alg).unwrap();
        let private = pair.serialize_pem();
        let public = pair.public_key_pem();
        let encoding = match jwt_alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(private.as_bytes()).unwrap(),
            _ => EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
        };
        let token = sign(jwt_alg, &encoding);
        let verifier = Verifier::new(pinned, public.as_bytes()).unwrap();
        assert!(
            verifier.verify(&token).unwrap().may_publish_to(&["x"]),
            "{pinned:?}"
        );
        // A different key of the same kind does not verify it.
        let stranger = rcgen::KeyPair::generate_for(rc_alg).unwrap();
        let wrong = Verifier::new(pinned, stranger.public_key_pem().as_bytes()).unwrap();
        assert!(wrong.verify(&token).is_err(), "{pinned:?}");
    }
}

#[test]
fn none_and_bad_keys_are_refused_up_front() {
    assert!("none".parse::<KeyAlgorithm>().is_err());
    assert!("HS1".parse::<KeyAlgorithm>().is_err());
    assert_eq!(
        "es256".parse::<KeyAlgorithm>().unwrap(),
        KeyAlgorithm::ES256
    );
    assert!(Verifier::new(KeyAlgorithm::RS256, b"not a pem").is_err());
    assert!(Verifier::new(KeyAlgorithm::HS256, b"").is_err());
    assert!(Verifier::new(KeyAlgorithm::ES256, RSA_PUBLIC).is_err());
}
