//! Length fields checked before a file reaches symphonia.
//!
//! symphonia 0.5 allocates a buffer of whatever length a metadata field states before reading
//! into it: a 13 kB FLAC file whose comment claims 3.3 GB made it allocate 3.3 GB (found by
//! fuzzing, `audio_decode`), which aborts or exhausts memory instead of giving an error. The
//! metadata LoSATok never uses is where such fields live: FLAC `VORBIS_COMMENT` and `PICTURE`
//! blocks, the Vorbis/Opus comment header of Ogg streams, and ID3v2 frames in front of MP3.
//! Every length there is compared here with what contains it (the block, the packet, the tag,
//! the file); a length that does not fit is a damaged file, reported as such.
//!
//! Why not a patched symphonia: the fields are few and well specified, and a `[patch]` of a
//! third-party crate has to be carried across its releases; this check costs one read of the
//! metadata, which is small (FLAC blocks are at most 16 MiB, and nothing is read beyond the
//! file).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::Container;
use crate::error::AudioError;

/// Checks the metadata length fields of `file` (positioned anywhere; left at byte 0).
pub(crate) fn check(file: &mut File, container: Container, path: &Path) -> Result<(), AudioError> {
    let len = file
        .metadata()
        .map_err(|e| AudioError::from_read(path, e))?
        .len();
    let result = match container {
        Container::Flac => flac(file, len),
        Container::Ogg => ogg(file, len),
        Container::Mp3 => id3v2(file, len),
        Container::Wav => Ok(()),
    };
    file.seek(SeekFrom::Start(0))
        .map_err(|e| AudioError::from_read(path, e))?;
    match result {
        Ok(()) => Ok(()),
        Err(Check::Damaged(what)) => Err(AudioError::corrupt(
            path,
            format!("damaged {what} (a length field exceeds what contains it)"),
        )),
        Err(Check::Io(e)) => Err(AudioError::from_read(path, e)),
    }
}

enum Check {
    Damaged(&'static str),
    Io(std::io::Error),
}

impl From<std::io::Error> for Check {
    fn from(e: std::io::Error) -> Self {
        Check::Io(e)
    }
}

/// Reads up to `n` bytes at the current position (fewer at the end of the file).
fn read_up_to(file: &mut File, n: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.by_ref().take(n).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A little-endian `u32` at `*pos` of `buf`, advancing; `None` past the end.
fn u32_le(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let b = buf.get(*pos..*pos + 4)?;
    *pos += 4;
    Some(u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
}

/// A big-endian `u32` at `*pos` of `buf`, advancing; `None` past the end.
fn u32_be(buf: &[u8], pos: &mut usize) -> Option<usize> {
    let b = buf.get(*pos..*pos + 4)?;
    *pos += 4;
    Some(u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
}

/// Skips `n` bytes of `buf` at `*pos`: `false` if they are not all there.
fn skip(buf: &[u8], pos: &mut usize, n: usize) -> bool {
    match pos.checked_add(n) {
        Some(end) if end <= buf.len() => {
            *pos = end;
            true
        }
        _ => false,
    }
}

/// A Vorbis comment structure (vendor string, then counted comments), as in FLAC's
/// `VORBIS_COMMENT` block and Ogg's comment headers: every length within `buf`.
fn vorbis_comments(buf: &[u8]) -> bool {
    let mut pos = 0;
    let Some(vendor) = u32_le(buf, &mut pos) else {
        return false;
    };
    if !skip(buf, &mut pos, vendor) {
        return false;
    }
    let Some(count) = u32_le(buf, &mut pos) else {
        return false;
    };
    for _ in 0..count {
        match u32_le(buf, &mut pos) {
            Some(n) if skip(buf, &mut pos, n) => {}
            _ => return false,
        }
    }
    true
}

/// A FLAC `PICTURE` block: media type, description and picture data within `buf`.
fn flac_picture(buf: &[u8]) -> bool {
    let mut pos = 4; // picture type
    for _ in 0..2 {
        match u32_be(buf, &mut pos) {
            Some(n) if skip(buf, &mut pos, n) => {}
            _ => return false,
        }
    }
    // width, height, depth, colours
    if !skip(buf, &mut pos, 16) {
        return false;
    }
    matches!(u32_be(buf, &mut pos), Some(n) if skip(buf, &mut pos, n))
}

/// FLAC metadata blocks after `fLaC`: the comment and picture blocks' inner lengths.
fn flac(file: &mut File, len: u64) -> Result<(), Check> {
    file.seek(SeekFrom::Start(4))?;
    let mut at = 4u64;
    loop {
        let header = read_up_to(file, 4)?;
        if header.len() < 4 {
            return Ok(()); // truncated: the decoder reports it
        }
        at += 4;
        let last = header[0] & 0x80 != 0;
        let kind = header[0] & 0x7f;
        let block = u64::from(u32::from_be_bytes([0, header[1], header[2], header[3]]));
        if matches!(kind, 4 | 6) {
            let body = read_up_to(file, block)?;
            let fits = match kind {
                4 => vorbis_comments(&body),
                _ => flac_picture(&body),
            };
            if !fits {
                return Err(Check::Damaged(if kind == 4 {
                    "FLAC comment block"
                } else {
                    "FLAC picture block"
                }));
            }
        } else {
            file.seek(SeekFrom::Current(block.min(len.saturating_sub(at)) as i64))?;
        }
        at = at.saturating_add(block);
        if last || at >= len {
            return Ok(());
        }
    }
}

/// The first packets of the first logical Ogg stream, reassembled from its pages: its comment
/// header (`\x03vorbis`, `OpusTags`) checked. At most the first `MAX_HEADER_PACKETS` packets are
/// read.
fn ogg(file: &mut File, len: u64) -> Result<(), Check> {
    const MAX_HEADER_PACKETS: usize = 3;
    file.seek(SeekFrom::Start(0))?;
    let mut serial = None;
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    let mut read = 0u64;
    while packets.len() < MAX_HEADER_PACKETS && read < len {
        let header = read_up_to(file, 27)?;
        if header.len() < 27 || &header[..4] != b"OggS" {
            break; // not a page: the demuxer reports it
        }
        let segments = usize::from(header[26]);
        let table = read_up_to(file, segments as u64)?;
        if table.len() < segments {
            break;
        }
        read += 27 + segments as u64;
        let page_serial = u32::from_le_bytes(header[14..18].try_into().expect("4 bytes"));
        let body_len: u64 = table.iter().map(|&l| u64::from(l)).sum();
        let body = read_up_to(file, body_len)?;
        read += body_len;
        if *serial.get_or_insert(page_serial) != page_serial {
            continue; // another stream's page
        }
        let mut pos = 0usize;
        for &lace in &table {
            let end = (pos + usize::from(lace)).min(body.len());
            current.extend_from_slice(&body[pos..end]);
            pos = end;
            if lace < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
    }
    for p in &packets {
        let comments = p
            .strip_prefix(b"\x03vorbis")
            .or_else(|| p.strip_prefix(b"OpusTags"));
        if let Some(c) = comments {
            if !vorbis_comments(c) {
                return Err(Check::Damaged("Ogg comment header"));
            }
        }
    }
    Ok(())
}

/// An ID3v2 tag in front of an MP3 stream: the tag within the file, every frame within the tag.
fn id3v2(file: &mut File, len: u64) -> Result<(), Check> {
    file.seek(SeekFrom::Start(0))?;
    let header = read_up_to(file, 10)?;
    if header.len() < 10 || &header[..3] != b"ID3" {
        return Ok(());
    }
    let version = header[3];
    let flags = header[5];
    let synchsafe = |b: &[u8]| {
        b.iter()
            .fold(0usize, |acc, &x| (acc << 7) | usize::from(x & 0x7f))
    };
    let size = synchsafe(&header[6..10]);
    if 10 + size as u64 > len {
        return Err(Check::Damaged("ID3v2 tag"));
    }
    let tag = read_up_to(file, size as u64)?;
    let mut pos = 0usize;
    if flags & 0x40 != 0 && version >= 3 {
        // an extended header: v2.3 gives its size after the size field, v2.4 including it
        let Some(b) = tag.get(0..4) else {
            return Err(Check::Damaged("ID3v2 tag"));
        };
        let ext = if version == 3 {
            4 + u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize
        } else {
            synchsafe(b)
        };
        if !skip(&tag, &mut pos, ext) {
            return Err(Check::Damaged("ID3v2 tag"));
        }
    }
    let (header_len, size_len) = if version <= 2 { (6, 3) } else { (10, 4) };
    while pos + header_len <= tag.len() {
        let id_len = header_len - size_len - if version <= 2 { 0 } else { 2 };
        if tag[pos] == 0 {
            return Ok(()); // padding
        }
        let field = &tag[pos + id_len..pos + id_len + size_len];
        let frame = if version >= 4 {
            synchsafe(field)
        } else {
            field
                .iter()
                .fold(0usize, |acc, &x| (acc << 8) | usize::from(x))
        };
        pos += header_len;
        if !skip(&tag, &mut pos, frame) {
            return Err(Check::Damaged("ID3v2 frame"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comments(vendor: &[u8], list: &[&[u8]]) -> Vec<u8> {
        let mut v = (vendor.len() as u32).to_le_bytes().to_vec();
        v.extend_from_slice(vendor);
        v.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for c in list {
            v.extend_from_slice(&(c.len() as u32).to_le_bytes());
            v.extend_from_slice(c);
        }
        v
    }

    #[test]
    fn comment_lengths_must_fit() {
        let good = comments(b"libFLAC", &[b"TITLE=x", b"ARTIST=y"]);
        assert!(vorbis_comments(&good));
        let mut huge = good.clone();
        // the first comment claims 3.3 GB
        let at = 4 + 7 + 4;
        huge[at..at + 4].copy_from_slice(&3_338_206_976u32.to_le_bytes());
        assert!(!vorbis_comments(&huge));
        assert!(!vorbis_comments(&good[..good.len() - 1]));
        let mut many = comments(b"v", &[]);
        let n = many.len();
        many[n - 4..].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(!vorbis_comments(&many));
    }

    #[test]
    fn picture_lengths_must_fit() {
        let mut p = vec![0, 0, 0, 3];
        p.extend_from_slice(&9u32.to_be_bytes());
        p.extend_from_slice(b"image/png");
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(&3u32.to_be_bytes());
        p.extend_from_slice(b"png");
        assert!(flac_picture(&p));
        let mut bad = p.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(!flac_picture(&bad));
        assert!(!flac_picture(&p[..p.len() - 1]));
    }
}
