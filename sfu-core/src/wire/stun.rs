//! STUN message view (RFC 8489), only as far as demultiplexing needs: the header and the
//! USERNAME attribute, which names the ICE ufrags of a binding request.

use super::WireError;

const HEADER_LEN: usize = 20;
const MAGIC_COOKIE: u32 = 0x2112_A442;
const ATTR_USERNAME: u16 = 0x0006;
/// Upper bound on attributes walked, so a crafted message cannot make the walk long.
const MAX_ATTRIBUTES: usize = 32;

/// A read-only view of a STUN message.
#[derive(Debug, Clone)]
pub struct StunPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> StunPacket<T> {
    /// Wraps a buffer after checking the header: top bits zero, magic cookie, and a message
    /// length that is a multiple of 4 and matches the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let buf = buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if buf[0] & 0xc0 != 0
            || u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) != MAGIC_COOKIE
        {
            return Err(WireError::BadVersion);
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if len % 4 != 0 || HEADER_LEN + len != buf.len() {
            return Err(WireError::BadLength);
        }
        Ok(StunPacket { buffer })
    }

    /// The message type (method and class).
    pub fn message_type(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Whether this is a Binding request (the only STUN a client sends an ICE-lite server).
    pub fn is_binding_request(&self) -> bool {
        self.message_type() == 0x0001
    }

    /// The USERNAME attribute's value, if present and well formed.
    pub fn username(&self) -> Option<&[u8]> {
        let b = self.buffer.as_ref();
        let mut at = HEADER_LEN;
        for _ in 0..MAX_ATTRIBUTES {
            let head = b.get(at..at + 4)?;
            let kind = u16::from_be_bytes([head[0], head[1]]);
            let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
            let value = b.get(at + 4..at + 4 + len)?;
            if kind == ATTR_USERNAME {
                return Some(value);
            }
            at += 4 + len.next_multiple_of(4);
        }
        None
    }

    /// The receiver's ufrag: the part of USERNAME before the colon (RFC 8445 §7.2.2), which for
    /// a request to us is the ufrag we handed out in our SDP.
    pub fn local_ufrag(&self) -> Option<&[u8]> {
        let username = self.username()?;
        let colon = username.iter().position(|&c| c == b':')?;
        Some(&username[..colon])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let padded = username.len().next_multiple_of(4);
        let mut m = vec![0, 1];
        m.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        m.extend_from_slice(&(username.len() as u16).to_be_bytes());
        m.extend_from_slice(username);
        m.resize(HEADER_LEN + 4 + padded, 0);
        m
    }

    #[test]
    fn finds_the_local_ufrag() {
        let m = binding_request(b"srvx:cli");
        let p = StunPacket::new_checked(&m[..]).unwrap();
        assert!(p.is_binding_request());
        assert_eq!(p.local_ufrag(), Some(&b"srvx"[..]));
    }

    #[test]
    fn hostile_messages_are_refused_or_yield_nothing() {
        let m = binding_request(b"srvx:cli");
        assert_eq!(
            StunPacket::new_checked(&m[..19]).unwrap_err(),
            WireError::Truncated
        );
        assert_eq!(
            StunPacket::new_checked(&m[..m.len() - 4]).unwrap_err(),
            WireError::BadLength
        );
        let mut no_cookie = m.clone();
        no_cookie[4] = 0;
        assert_eq!(
            StunPacket::new_checked(&no_cookie[..]).unwrap_err(),
            WireError::BadVersion
        );
        let mut long_attr = m.clone();
        long_attr[22] = 0xff;
        let p = StunPacket::new_checked(&long_attr[..]).unwrap();
        assert_eq!(p.username(), None);
        let no_colon = binding_request(b"nocolon");
        assert_eq!(
            StunPacket::new_checked(&no_colon[..])
                .unwrap()
                .local_ufrag(),
            None
        );
    }
}
