//! The join token an agent is given (`DIR/node-token` of a server), k3s's shape:
//! `K10<sha256 hex of the cluster CA PEM>::<credentials>`, where the credentials are a
//! bootstrap token `<id>.<secret>`. Anything else is a plain bearer token (the legacy way
//! in, which needs `--ca-file`).

use crate::Error;

/// What a token file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// A join token: the CA it pins and the bootstrap token to join with.
    Join { ca_hash: String, bootstrap: String },
    /// A bearer token used as is.
    Bearer(String),
}

/// Parses a token file's content.
pub fn parse(content: &str) -> Result<Token, Error> {
    let t = content.trim();
    let Some(rest) = t.strip_prefix("K10") else {
        if t.is_empty() {
            return Err(Error::Token("the token file is empty".into()));
        }
        return Ok(Token::Bearer(t.to_string()));
    };
    let (hash, creds) = rest
        .split_once("::")
        .ok_or_else(|| Error::Token("a K10 token needs '::' after the CA hash".into()))?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Token(
            "the CA hash of a K10 token is 64 hex digits (sha256)".into(),
        ));
    }
    if creds.is_empty() {
        return Err(Error::Token("the K10 token carries no credentials".into()));
    }
    Ok(Token::Join {
        ca_hash: hash.to_ascii_lowercase(),
        bootstrap: creds.to_string(),
    })
}

/// The hex SHA-256 of a CA PEM, as the token pins it.
pub fn ca_hash(ca_pem: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, ca_pem);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses() {
        let h = "a".repeat(64);
        let cases: Vec<(String, Result<Token, ()>)> = vec![
            (
                format!("K10{h}::abcdef.0123456789abcdef\n"),
                Ok(Token::Join {
                    ca_hash: h.clone(),
                    bootstrap: "abcdef.0123456789abcdef".into(),
                }),
            ),
            ("0123abcd\n".into(), Ok(Token::Bearer("0123abcd".into()))),
            (format!("K10{h}abcdef"), Err(())),
            ("K10abc::x".into(), Err(())),
            (format!("K10{h}::"), Err(())),
            ("  \n".into(), Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse(&input).map_err(|_| ()), want, "{input:?}");
        }
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            ca_hash(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
