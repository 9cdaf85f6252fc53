//! Where an upstream response body ends (RFC 9112 §6.3), so the fast path can relay its bytes
//! unchanged and still know when the upstream connection is free for the next request.

use http::{Method, StatusCode};

/// How the body of one upstream response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 1xx, 204, 304.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`, relayed as is.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// The framing of a response to `method` with `status` and these (upstream) headers, as
/// (name, value) bytes; `None` when the headers contradict each other (a length that is not
/// a number, two different lengths, or a transfer coding other than chunked last), which a
/// proxy must refuse.
pub fn response_framing<'h>(
    method: &Method,
    status: StatusCode,
    headers: impl Iterator<Item = (&'h [u8], &'h [u8])>,
) -> Option<Framing> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Some(Framing::Empty);
    }
    let mut last_coding: Option<&[u8]> = None;
    let mut length = None;
    let mut bad_length = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            last_coding = Some(
                value
                    .rsplit(|b| *b == b',')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii(),
            );
        } else if name.eq_ignore_ascii_case(b"content-length") {
            for part in value.split(|b| *b == b',') {
                let n = std::str::from_utf8(part.trim_ascii())
                    .ok()
                    .and_then(|p| p.parse::<u64>().ok());
                match n {
                    Some(n) if length.is_none_or(|l| l == n) => length = Some(n),
                    _ => bad_length = true,
                }
            }
        }
    }
    if let Some(coding) = last_coding {
        return coding
            .eq_ignore_ascii_case(b"chunked")
            .then_some(Framing::Chunked);
    }
    if bad_length {
        return None;
    }
    Some(length.map_or(Framing::UntilClose, Framing::Length))
}

/// Follows a chunked body byte by byte without changing it: how many of the bytes fed so far
/// belong to the body, and how many of those are data (for byte counts).
#[derive(Debug, Default)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
    /// Data bytes seen so far (chunk contents, no framing).
    pub data_bytes: u64,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    /// After the size: extensions or whitespace up to CR LF.
    SizeRest,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

/// The chunked framing is broken.
#[derive(Debug, thiserror::Error)]
#[error("invalid chunked body from the upstream")]
pub struct ChunkedError;

impl ChunkedScanner {
    /// Feeds `bytes`; returns `Some(n)` when the body ends after the first `n` of them.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<usize>, ChunkedError> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            match self.state {
                State::Size => match (b as char).to_digit(16) {
                    Some(d) => {
                        self.size = self
                            .size
                            .checked_mul(16)
                            .and_then(|s| s.checked_add(u64::from(d)))
                            .ok_or(ChunkedError)?;
                    }
                    None if b == b'\r' => self.state = State::SizeLf,
                    None if b == b';' || b == b' ' || b == b'\t' => self.state = State::SizeRest,
                    None => return Err(ChunkedError),
                },
                State::SizeRest => {
                    if b == b'\r' {
                        self.state = State::SizeLf;
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkedError);
                    }
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
                    // Skip the chunk's data in one step.
                    let take =
                        (bytes.len() - i).min(usize::try_from(self.size).unwrap_or(usize::MAX));
                    self.size -= take as u64;
                    self.data_bytes += take as u64;
                    i += take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkedError);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkedError);
                    }
                    self.state = State::Size;
                }
                State::TrailerStart => {
                    self.state = if b == b'\r' {
                        State::FinalLf
                    } else {
                        State::TrailerLine
                    };
                }
                State::TrailerLine => {
                    if b == b'\r' {
                        self.state = State::TrailerLf;
                    }
                }
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkedError);
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkedError);
                    }
                    self.state = State::Done;
                    return Ok(Some(i + 1));
                }
                State::Done => return Ok(Some(i)),
            }
            i += 1;
        }
        Ok((self.state == State::Done).then_some(bytes.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(
        pairs: &'a [(&'static str, &'static str)],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let ok = StatusCode::OK;
        let get = Method::GET;
        assert_eq!(
            response_framing(&get, ok, headers(&[("content-length", "12")])),
            Some(Framing::Length(12))
        );
        assert_eq!(
            response_framing(&Method::HEAD, ok, headers(&[("content-length", "12")])),
            Some(Framing::Empty)
        );
        assert_eq!(
            response_framing(&get, StatusCode::NOT_MODIFIED, headers(&[])),
            Some(Framing::Empty)
        );
        assert_eq!(
            response_framing(
                &get,
                ok,
                headers(&[("transfer-encoding", "chunked"), ("content-length", "3")])
            ),
            Some(Framing::Chunked),
            "transfer-encoding wins over content-length"
        );
        assert_eq!(
            response_framing(&get, ok, headers(&[("transfer-encoding", "gzip")])),
            None
        );
        assert_eq!(
            response_framing(&get, ok, headers(&[("content-length", "3, 3")])),
            Some(Framing::Length(3))
        );
        assert_eq!(
            response_framing(
                &get,
                ok,
                headers(&[("content-length", "3"), ("content-length", "4")])
            ),
            None
        );
        assert_eq!(
            response_framing(&get, ok, headers(&[("content-length", "x")])),
            None
        );
        assert_eq!(
            response_framing(&get, ok, headers(&[])),
            Some(Framing::UntilClose)
        );
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers_in_any_split() {
        let body =
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nExpires: x\r\n\r\n";
        let mut next = body.to_vec();
        next.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        for split in 0..body.len() {
            let mut scanner = ChunkedScanner::default();
            let first = scanner.feed(&next[..split]).expect("valid");
            assert_eq!(first, None, "split at {split}");
            let end = scanner.feed(&next[split..]).expect("valid");
            assert_eq!(end, Some(body.len() - split), "split at {split}");
            assert_eq!(scanner.data_bytes, 23);
        }
    }

    #[test]
    fn broken_chunked_framing_is_refused() {
        for bad in [
            &b"zz\r\n"[..],
            b"3\r\nabcX",
            b"3\nabc",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(ChunkedScanner::default().feed(bad).is_err(), "{bad:?}");
        }
    }
}
