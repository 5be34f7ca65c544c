//! The server half of a WebSocket handshake as the streaming endpoints answer it: the
//! subprotocols a client offers, the accept key, and the headers of the 101. Both the API
//! server (logs) and the agent (exec, attach, port-forward) use it; the frames themselves
//! are tungstenite's.

use http::{header, HeaderMap, HeaderValue};

/// A WebSocket upgrade request: the key's accept value and the subprotocols offered, in the
/// client's order.
pub struct Offer {
    pub accept: String,
    pub protocols: Vec<String>,
}

impl Offer {
    /// The offer in `headers`, if they ask for a WebSocket (`Upgrade: websocket` with a key).
    pub fn from_headers(headers: &HeaderMap) -> Option<Offer> {
        let is_ws = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let key = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| is_ws)?;
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let protocols = headers
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
            .filter(|p| !p.is_empty())
            .collect();
        Some(Offer { accept, protocols })
    }

    /// The first of `ours` (in our order of preference) the client offered.
    pub fn choose(&self, ours: &[&'static str]) -> Option<&'static str> {
        ours.iter()
            .copied()
            .find(|p| self.protocols.iter().any(|o| o == p))
    }
}

/// Fills in a 101 answer's headers for `accept` and the chosen subprotocol, if any.
pub fn switching_headers(headers: &mut HeaderMap, accept: &str, protocol: Option<&'static str>) {
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_offer_and_chooses_our_preference() {
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        // RFC 6455's example key and accept value.
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h.append(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("channel.k8s.io, v4.channel.k8s.io"),
        );
        let offer = Offer::from_headers(&h).unwrap();
        assert_eq!(offer.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(
            offer.choose(&["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"]),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(offer.choose(&["binary.k8s.io"]), None);
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        assert!(Offer::from_headers(&h).is_none());
    }
}
