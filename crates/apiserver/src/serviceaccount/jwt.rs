//! Service-account tokens as JWTs (compact JWS, ES256): the claims upstream's
//! `pkg/serviceaccount/claims.go` puts in a token, signing with the server's key and
//! checking a token's signature and times.
//!
//! The key is an ECDSA P-256 key kept in `DIR/pki/sa.key` (see `tls::ensure`); `ring`
//! signs and verifies, so no JOSE library joins the build. Only what this server issues is
//! accepted: ES256, issuer [`ISSUER`], the key's own `kid`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};

/// The `iss` of every token, upstream's usual `--service-account-issuer`.
pub const ISSUER: &str = super::DEFAULT_AUDIENCE;

/// Clock skew tolerated on `exp`, `nbf` and `iat` (go-jose's default leeway, which
/// kube-apiserver's validator uses).
pub const LEEWAY_SECONDS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("invalid service-account signing key: {0}")]
    Key(String),
    #[error("signing failed")]
    Sign,
    #[error("malformed token")]
    Malformed,
    #[error("token signed with an unexpected algorithm or key")]
    UnexpectedKey,
    #[error("invalid signature")]
    Signature,
    #[error("token has an unexpected issuer")]
    Issuer,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
}

/// A `{name, uid}` reference inside the `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub name: String,
    pub uid: String,
}

/// The private `kubernetes.io` claim: what the token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bound {
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<Ref>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<Ref>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<Ref>,
    pub serviceaccount: Ref,
}

/// The claims of a service-account token, named as upstream names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: Bound,
    pub nbf: i64,
    pub sub: String,
}

/// RFC 7519 allows `aud` as one string or an array.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Aud::deserialize(d)? {
        Aud::One(s) => vec![s],
        Aud::Many(v) => v,
    })
}

/// `system:serviceaccount:NS:NAME`, the username of a service account.
pub fn subject(namespace: &str, name: &str) -> String {
    format!("system:serviceaccount:{namespace}:{name}")
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    kid: String,
}

/// The server's token key: signs new tokens, verifies presented ones.
pub struct TokenKeys {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl TokenKeys {
    /// From a PKCS#8 DER ECDSA P-256 private key.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, JwtError> {
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| JwtError::Key(e.to_string()))?;
        // As upstream: the key id is a digest of the public key, so verifiers can pick the
        // right key once several are served.
        let digest = ring::digest::digest(&ring::digest::SHA256, key.public_key().as_ref());
        let kid = URL_SAFE_NO_PAD.encode(digest.as_ref());
        Ok(TokenKeys { key, kid, rng })
    }

    /// A fresh key, as PKCS#8 DER.
    pub fn generate_pkcs8() -> Result<Vec<u8>, JwtError> {
        let doc = EcdsaKeyPair::generate_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &SystemRandom::new(),
        )
        .map_err(|e| JwtError::Key(e.to_string()))?;
        Ok(doc.as_ref().to_vec())
    }

    /// The compact JWS of `claims`.
    pub fn sign(&self, claims: &Claims) -> Result<String, JwtError> {
        let header = Header {
            alg: "ES256".into(),
            kid: self.kid.clone(),
        };
        let encode = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        let header = serde_json::to_vec(&header).map_err(|_| JwtError::Sign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| JwtError::Sign)?;
        let signing_input = format!("{}.{}", encode(&header), encode(&payload));
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| JwtError::Sign)?;
        Ok(format!("{signing_input}.{}", encode(sig.as_ref())))
    }

    /// The claims of `token` if this key signed it, its issuer is ours and it is valid at
    /// `now` (Unix seconds) within the leeway. Audience and bound objects are the caller's
    /// to check.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let decode = |v: &str| URL_SAFE_NO_PAD.decode(v).map_err(|_| JwtError::Malformed);
        let header: Header =
            serde_json::from_slice(&decode(h)?).map_err(|_| JwtError::Malformed)?;
        if header.alg != "ES256" || (!header.kid.is_empty() && header.kid != self.kid) {
            return Err(JwtError::UnexpectedKey);
        }
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        let signed = &token[..h.len() + 1 + p.len()];
        public
            .verify(signed.as_bytes(), &decode(s)?)
            .map_err(|_| JwtError::Signature)?;
        let claims: Claims =
            serde_json::from_slice(&decode(p)?).map_err(|_| JwtError::Malformed)?;
        if claims.iss != ISSUER {
            return Err(JwtError::Issuer);
        }
        if now > claims.exp + LEEWAY_SECONDS {
            return Err(JwtError::Expired);
        }
        if now + LEEWAY_SECONDS < claims.nbf || now + LEEWAY_SECONDS < claims.iat {
            return Err(JwtError::NotYetValid);
        }
        Ok(claims)
    }
}

/// The claims of a token without checking anything: what a holder (the node agent) reads
/// to know when its copy expires. Never use it to trust a token.
pub fn peek(token: &str) -> Option<serde_json::Value> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(now: i64) -> Claims {
        Claims {
            aud: vec![ISSUER.into()],
            exp: now + 600,
            iat: now,
            iss: ISSUER.into(),
            jti: "j".into(),
            kubernetes: Bound {
                namespace: "ns".into(),
                node: None,
                pod: Some(Ref {
                    name: "p".into(),
                    uid: "pu".into(),
                }),
                secret: None,
                serviceaccount: Ref {
                    name: "default".into(),
                    uid: "su".into(),
                },
            },
            nbf: now,
            sub: subject("ns", "default"),
        }
    }

    fn keys() -> TokenKeys {
        TokenKeys::from_pkcs8(&TokenKeys::generate_pkcs8().unwrap()).unwrap()
    }

    #[test]
    fn a_signed_token_verifies_with_its_claims() {
        let k = keys();
        let c = claims(1_000_000);
        let t = k.sign(&c).unwrap();
        assert_eq!(k.verify(&t, 1_000_100).unwrap(), c);
        let payload = peek(&t).unwrap();
        assert_eq!(payload["sub"], "system:serviceaccount:ns:default");
        assert_eq!(payload["kubernetes.io"]["pod"]["uid"], "pu");
        assert_eq!(payload["aud"], serde_json::json!([ISSUER]));
    }

    #[test]
    fn expiry_allows_the_leeway_and_no_more() {
        let k = keys();
        let c = claims(1_000_000);
        let t = k.sign(&c).unwrap();
        assert!(k.verify(&t, c.exp + LEEWAY_SECONDS).is_ok());
        assert!(matches!(
            k.verify(&t, c.exp + LEEWAY_SECONDS + 1),
            Err(JwtError::Expired)
        ));
        assert!(matches!(
            k.verify(&t, c.nbf - LEEWAY_SECONDS - 1),
            Err(JwtError::NotYetValid)
        ));
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let k = keys();
        let other = keys();
        let c = claims(1_000_000);
        let t = other.sign(&c).unwrap();
        assert!(k.verify(&t, 1_000_000).is_err());
        // Same signature, changed payload.
        let t = k.sign(&c).unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        let mut forged = c.clone();
        forged.kubernetes.serviceaccount.name = "admin".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        parts[1] = &body;
        assert!(matches!(
            k.verify(&parts.join("."), 1_000_000),
            Err(JwtError::Signature)
        ));
        // "none" algorithm.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c).unwrap())
        );
        assert!(k.verify(&none, 1_000_000).is_err());
        assert!(k.verify("not.a.jwt.at-all", 1_000_000).is_err());
        assert!(k.verify("", 1_000_000).is_err());
    }

    #[test]
    fn a_single_audience_string_is_read() {
        let v = serde_json::json!({
            "aud": "x", "exp": 2, "iat": 1, "nbf": 1, "iss": ISSUER, "jti": "j", "sub": "s",
            "kubernetes.io": { "namespace": "n", "serviceaccount": { "name": "a", "uid": "u" } },
        });
        let c: Claims = serde_json::from_value(v).unwrap();
        assert_eq!(c.aud, vec!["x".to_string()]);
    }
}
