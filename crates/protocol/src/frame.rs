//! Kafka framing: every request and response is a big-endian `i32` size followed by that
//! many bytes.

use bytes::{Buf, BytesMut};
use thiserror::Error;

/// Bytes of the size prefix.
pub const FRAME_SIZE_PREFIX_BYTES: usize = 4;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    #[error("frame size {size_bytes} is negative")]
    NegativeSize { size_bytes: i32 },
    #[error("frame size {size_bytes} exceeds socket.request.max.bytes ({max_bytes})")]
    TooLarge { size_bytes: usize, max_bytes: usize },
}

/// Takes the next whole frame (without its size prefix) off the front of `buf`, if one is
/// there. Returns `Ok(None)` when more bytes are needed. A size prefix that is negative or
/// larger than `frame_bytes_max` is an error: the connection must be closed. Reserves nothing:
/// the caller decides when to buffer the rest of a frame ([`pending_frame_bytes`]).
pub fn take_frame(
    buf: &mut BytesMut,
    frame_bytes_max: usize,
) -> Result<Option<BytesMut>, FrameError> {
    if buf.len() < FRAME_SIZE_PREFIX_BYTES {
        return Ok(None);
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if size < 0 {
        return Err(FrameError::NegativeSize { size_bytes: size });
    }
    let size = size as usize;
    if size > frame_bytes_max {
        return Err(FrameError::TooLarge {
            size_bytes: size,
            max_bytes: frame_bytes_max,
        });
    }
    if buf.len() < FRAME_SIZE_PREFIX_BYTES + size {
        return Ok(None);
    }
    buf.advance(FRAME_SIZE_PREFIX_BYTES);
    Ok(Some(buf.split_to(size)))
}

/// Bytes (size prefix included) of the frame at the front of `buf` when its size prefix is
/// there but the frame is not whole yet, i.e. after [`take_frame`] returned `Ok(None)`.
pub fn pending_frame_bytes(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; FRAME_SIZE_PREFIX_BYTES] =
        buf.get(..FRAME_SIZE_PREFIX_BYTES)?.try_into().ok()?;
    let size = usize::try_from(i32::from_be_bytes(prefix)).ok()?;
    let total = FRAME_SIZE_PREFIX_BYTES + size;
    (buf.len() < total).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_partial_frame_should_wait_for_more_bytes() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 5, 1, 2][..]);
        assert_eq!(take_frame(&mut b, 100).unwrap(), None);
        assert_eq!(pending_frame_bytes(&b), Some(9));
        assert_eq!(
            pending_frame_bytes(&b[..3]),
            None,
            "size prefix not there yet"
        );
        b.extend_from_slice(&[3, 4, 5, 9]);
        let f = take_frame(&mut b, 100).unwrap().unwrap();
        assert_eq!(&f[..], &[1, 2, 3, 4, 5]);
        assert_eq!(&b[..], &[9]);
    }

    #[test]
    fn given_absurd_size_prefix_should_reject_without_allocating() {
        let mut b = BytesMut::from(&[0x7fu8, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            take_frame(&mut b, 1024),
            Err(FrameError::TooLarge { .. })
        ));
        let mut b = BytesMut::from(&[0xffu8, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            take_frame(&mut b, 1024),
            Err(FrameError::NegativeSize { .. })
        ));
    }

    #[test]
    fn given_two_pipelined_frames_should_take_them_in_order() {
        let mut b = BytesMut::from(&[0u8, 0, 0, 1, 7, 0, 0, 0, 0, 0, 0, 0, 1, 8][..]);
        assert_eq!(&take_frame(&mut b, 10).unwrap().unwrap()[..], &[7]);
        assert_eq!(&take_frame(&mut b, 10).unwrap().unwrap()[..], &[] as &[u8]);
        assert_eq!(&take_frame(&mut b, 10).unwrap().unwrap()[..], &[8]);
        assert!(b.is_empty());
    }
}
