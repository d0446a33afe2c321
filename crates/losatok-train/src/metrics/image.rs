//! PNG rendering for the logs: log-mel spectrograms (alone or stacked, e.g. reference /
//! before / after) and loss curves. Everything is drawn on a small RGB canvas with a built-in
//! 5×7 ASCII bitmap font and encoded with the `png` crate.

use super::MetricsError;

// ---------------------------------------------------------------------------------------------
// Colour maps
// ---------------------------------------------------------------------------------------------

/// A perceptual colour map (piecewise-linear approximation through 11 reference colours).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Colormap {
    /// Dark blue → green → yellow (matplotlib's viridis).
    #[default]
    Viridis,
    /// Black → purple → orange → light yellow (matplotlib's magma).
    Magma,
}

const VIRIDIS: [u32; 11] = [
    0x440154, 0x482475, 0x414487, 0x355F8D, 0x2A788E, 0x21918C, 0x22A884, 0x44BF70, 0x7AD151,
    0xBDDF26, 0xFDE725,
];
const MAGMA: [u32; 11] = [
    0x000004, 0x140E36, 0x3B0F70, 0x641A80, 0x8C2981, 0xB73779, 0xDE4968, 0xF7705C, 0xFE9F6D,
    0xFECF92, 0xFCFDBF,
];

impl Colormap {
    /// The colour of `t` in `[0, 1]` (clamped; NaN maps to 0).
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let table = match self {
            Colormap::Viridis => &VIRIDIS,
            Colormap::Magma => &MAGMA,
        };
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let x = t * (table.len() - 1) as f32;
        let i = (x.floor() as usize).min(table.len() - 2);
        let f = x - i as f32;
        let (a, b) = (rgb_of(table[i]), rgb_of(table[i + 1]));
        std::array::from_fn(|c| (a[c] as f32 + (b[c] as f32 - a[c] as f32) * f).round() as u8)
    }
}

fn rgb_of(hex: u32) -> [u8; 3] {
    [(hex >> 16) as u8, (hex >> 8) as u8, hex as u8]
}

// ---------------------------------------------------------------------------------------------
// Canvas, text and PNG encoding
// ---------------------------------------------------------------------------------------------

type Rgb = [u8; 3];

const WHITE: Rgb = [255, 255, 255];
const BLACK: Rgb = [0, 0, 0];
const HEADER_BG: Rgb = [32, 32, 32];
const GRID: Rgb = [226, 226, 226];
const FRAME_GREY: Rgb = [150, 150, 150];
const TEXT: Rgb = [30, 30, 30];

/// Glyph size of the built-in font, and the horizontal advance (one column of spacing).
const GLYPH_W: i64 = 5;
const GLYPH_H: i64 = 7;
const ADVANCE: i64 = 6;

/// An RGB8 image.
struct Canvas {
    w: u32,
    h: u32,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: u32, h: u32, bg: Rgb) -> Self {
        let mut px = Vec::with_capacity(w as usize * h as usize * 3);
        for _ in 0..w as usize * h as usize {
            px.extend_from_slice(&bg);
        }
        Self { w, h, px }
    }

    fn set(&mut self, x: i64, y: i64, c: Rgb) {
        if x >= 0 && y >= 0 && x < i64::from(self.w) && y < i64::from(self.h) {
            let i = (y as usize * self.w as usize + x as usize) * 3;
            self.px[i..i + 3].copy_from_slice(&c);
        }
    }

    /// Blends `c` over the pixel with opacity `alpha` in `[0, 1]`.
    fn blend(&mut self, x: i64, y: i64, c: Rgb, alpha: f32) {
        if x >= 0 && y >= 0 && x < i64::from(self.w) && y < i64::from(self.h) {
            let i = (y as usize * self.w as usize + x as usize) * 3;
            let a = alpha.clamp(0.0, 1.0);
            for (dst, &src) in self.px[i..i + 3].iter_mut().zip(&c) {
                let old = f32::from(*dst);
                *dst = (old + (f32::from(src) - old) * a).round() as u8;
            }
        }
    }

    fn fill_rect(&mut self, x: i64, y: i64, w: i64, h: i64, c: Rgb) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.set(xx, yy, c);
            }
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`; returns the width drawn.
    fn text(&mut self, x: i64, y: i64, text: &str, c: Rgb) -> i64 {
        let mut cx = x;
        for ch in text.chars() {
            let glyph = glyph(ch);
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        self.set(cx + col, y + row as i64, c);
                    }
                }
            }
            cx += ADVANCE;
        }
        cx - x
    }

    fn encode(&self, what: &str) -> Result<Vec<u8>, MetricsError> {
        let err = |e: png::EncodingError| MetricsError::Png {
            what: what.to_string(),
            message: e.to_string(),
        };
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, self.w, self.h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Balanced);
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_image_data(&self.px).map_err(err)?;
        writer.finish().map_err(err)?;
        Ok(out)
    }
}

/// Width in pixels of `text` in the built-in font.
fn text_width(text: &str) -> i64 {
    let n = text.chars().count() as i64;
    if n == 0 {
        0
    } else {
        n * ADVANCE - 1
    }
}

/// 5×7 bitmaps of the printable ASCII characters (32..=126): seven rows, top first, the
/// five low bits of each row from left (bit 4) to right (bit 0).
#[rustfmt::skip]
const FONT: [[u8; 7]; 95] = [
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00], // ' '
    [0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04], // '!'
    [0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00], // '"'
    [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A], // '#'
    [0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04], // '$'
    [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03], // '%'
    [0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D], // '&'
    [0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00], // '\''
    [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02], // '('
    [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08], // ')'
    [0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00], // '*'
    [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00], // '+'
    [0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08], // ','
    [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00], // '-'
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C], // '.'
    [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00], // '/'
    [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], // '0'
    [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E], // '1'
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], // '2'
    [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E], // '3'
    [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], // '4'
    [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E], // '5'
    [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], // '6'
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08], // '7'
    [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], // '8'
    [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C], // '9'
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00], // ':'
    [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08], // ';'
    [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02], // '<'
    [0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00], // '='
    [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08], // '>'
    [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04], // '?'
    [0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E], // '@'
    [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11], // 'A'
    [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E], // 'B'
    [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E], // 'C'
    [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C], // 'D'
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F], // 'E'
    [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10], // 'F'
    [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F], // 'G'
    [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], // 'H'
    [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], // 'I'
    [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C], // 'J'
    [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11], // 'K'
    [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F], // 'L'
    [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11], // 'M'
    [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11], // 'N'
    [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], // 'O'
    [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10], // 'P'
    [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D], // 'Q'
    [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11], // 'R'
    [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E], // 'S'
    [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04], // 'T'
    [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], // 'U'
    [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04], // 'V'
    [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A], // 'W'
    [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11], // 'X'
    [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04], // 'Y'
    [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F], // 'Z'
    [0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E], // '['
    [0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00], // '\\'
    [0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E], // ']'
    [0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00], // '^'
    [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F], // '_'
    [0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00], // '`'
    [0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F], // 'a'
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E], // 'b'
    [0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E], // 'c'
    [0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F], // 'd'
    [0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E], // 'e'
    [0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08], // 'f'
    [0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E], // 'g'
    [0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11], // 'h'
    [0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E], // 'i'
    [0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C], // 'j'
    [0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12], // 'k'
    [0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], // 'l'
    [0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11], // 'm'
    [0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11], // 'n'
    [0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E], // 'o'
    [0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10], // 'p'
    [0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01], // 'q'
    [0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10], // 'r'
    [0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E], // 's'
    [0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06], // 't'
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D], // 'u'
    [0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04], // 'v'
    [0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A], // 'w'
    [0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11], // 'x'
    [0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E], // 'y'
    [0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F], // 'z'
    [0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02], // '{'
    [0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04], // '|'
    [0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08], // '}'
    [0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00], // '~'
];

/// The glyph of `c`; characters outside printable ASCII are drawn as `?`.
fn glyph(c: char) -> &'static [u8; 7] {
    let i = c as u32;
    if (32..=126).contains(&i) {
        &FONT[(i - 32) as usize]
    } else {
        &FONT[(b'?' - 32) as usize]
    }
}

/// Width and height of a PNG from its `IHDR` chunk, or `None` if `png` is not a PNG.
pub fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 13, 10, 26, 10];
    if png.len() < 24 || png[..8] != SIGNATURE || &png[12..16] != b"IHDR" {
        return None;
    }
    let w = u32::from_be_bytes(png[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(png[20..24].try_into().ok()?);
    Some((w, h))
}

// ---------------------------------------------------------------------------------------------
// Spectrograms
// ---------------------------------------------------------------------------------------------

/// A log-mel spectrogram in dB, `[n_mels, frames]` row-major (mel band 0 = lowest
/// frequency, the layout of the DSP crate's `[B, n_mels, frames]` output for one item).
#[derive(Clone, Copy, Debug)]
pub struct Spectrogram<'a> {
    /// `n_mels · frames` values in dB.
    pub db: &'a [f32],
    /// Number of mel bands (rows).
    pub n_mels: usize,
    /// Number of frames (columns).
    pub frames: usize,
}

impl<'a> Spectrogram<'a> {
    /// Wraps `db`, checking that it holds `n_mels · frames > 0` values.
    pub fn new(db: &'a [f32], n_mels: usize, frames: usize) -> Result<Self, MetricsError> {
        let spec = Self { db, n_mels, frames };
        spec.check("spectrogram")?;
        Ok(spec)
    }

    fn check(&self, what: &str) -> Result<(), MetricsError> {
        if self.n_mels == 0 || self.frames == 0 {
            return Err(MetricsError::Invalid {
                what: what.to_string(),
                message: format!("empty spectrogram ({} × {})", self.n_mels, self.frames),
            });
        }
        if self.n_mels.checked_mul(self.frames) != Some(self.db.len()) {
            return Err(MetricsError::Invalid {
                what: what.to_string(),
                message: format!(
                    "{} values for {} mels × {} frames",
                    self.db.len(),
                    self.n_mels,
                    self.frames
                ),
            });
        }
        Ok(())
    }

    /// The largest finite value, if any.
    fn max_db(&self) -> Option<f32> {
        self.db
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .reduce(f32::max)
    }
}

/// How spectrograms are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpectrogramStyle {
    /// Dynamic range shown: values are clipped to `[max − top_db, max]` (default 80 dB).
    pub top_db: f32,
    /// Colour map (default viridis).
    pub colormap: Colormap,
    /// Pixels per frame, horizontally (default 1).
    pub x_scale: u32,
    /// Pixels per mel band, vertically (default 2).
    pub y_scale: u32,
}

impl Default for SpectrogramStyle {
    fn default() -> Self {
        Self {
            top_db: 80.0,
            colormap: Colormap::Viridis,
            x_scale: 1,
            y_scale: 2,
        }
    }
}

impl SpectrogramStyle {
    fn check(&self, what: &str) -> Result<(), MetricsError> {
        if self.x_scale == 0 || self.y_scale == 0 || self.x_scale > 64 || self.y_scale > 64 {
            return Err(MetricsError::Invalid {
                what: what.to_string(),
                message: format!(
                    "scales must be in 1..=64 (got {} × {})",
                    self.x_scale, self.y_scale
                ),
            });
        }
        if !(self.top_db.is_finite() && self.top_db > 0.0) {
            return Err(MetricsError::Invalid {
                what: what.to_string(),
                message: format!("top_db must be positive (got {})", self.top_db),
            });
        }
        Ok(())
    }
}

/// Paints `spec` at `(x0, y0)` with the colour range `[vmax − top_db, vmax]`, low
/// frequencies at the bottom. Non-finite values take the colour of the minimum.
fn paint_spectrogram(
    canvas: &mut Canvas,
    x0: i64,
    y0: i64,
    spec: &Spectrogram<'_>,
    vmax: f32,
    style: &SpectrogramStyle,
) {
    let (xs, ys) = (i64::from(style.x_scale), i64::from(style.y_scale));
    let vmin = vmax - style.top_db;
    for m in 0..spec.n_mels {
        let row = &spec.db[m * spec.frames..(m + 1) * spec.frames];
        let y = y0 + (spec.n_mels - 1 - m) as i64 * ys;
        for (t, &v) in row.iter().enumerate() {
            let norm = if v.is_finite() {
                (v - vmin) / style.top_db
            } else {
                0.0
            };
            let c = style.colormap.rgb(norm);
            canvas.fill_rect(x0 + t as i64 * xs, y, xs, ys, c);
        }
    }
}

/// Renders one log-mel spectrogram (dB, `[n_mels, frames]` row-major) as a PNG of
/// `frames · x_scale` × `n_mels · y_scale` pixels: time to the right, low frequencies at the
/// bottom, values clipped to `[max − top_db, max]`.
pub fn spectrogram_png(
    mel_db: &[f32],
    n_mels: usize,
    frames: usize,
    style: &SpectrogramStyle,
) -> Result<Vec<u8>, MetricsError> {
    let spec = Spectrogram {
        db: mel_db,
        n_mels,
        frames,
    };
    spec.check("spectrogram_png")?;
    style.check("spectrogram_png")?;
    let (w, h) = (
        checked_dim(frames, style.x_scale, "spectrogram_png")?,
        checked_dim(n_mels, style.y_scale, "spectrogram_png")?,
    );
    let mut canvas = Canvas::new(w, h, BLACK);
    let vmax = spec.max_db().unwrap_or(0.0);
    paint_spectrogram(&mut canvas, 0, 0, &spec, vmax, style);
    canvas.encode("spectrogram")
}

/// `n · scale` as an image dimension, refusing absurd sizes.
fn checked_dim(n: usize, scale: u32, what: &str) -> Result<u32, MetricsError> {
    const MAX: usize = 1 << 15;
    match n.checked_mul(scale as usize) {
        Some(v) if v <= MAX => Ok(v as u32),
        _ => Err(MetricsError::Invalid {
            what: what.to_string(),
            message: format!("image dimension {n} × {scale} exceeds {MAX} pixels"),
        }),
    }
}

/// Height of a label strip above each panel.
const LABEL_H: i64 = GLYPH_H + 4;
/// Height of the separator between panels.
const SEPARATOR_H: i64 = 2;

/// Renders labelled spectrograms stacked vertically, one panel per `(label, spectrogram)`,
/// each under a dark strip with its label, separated by 2-pixel white lines. All panels share
/// one colour range, `[max − top_db, max]` with `max` over all panels, so levels compare
/// directly; the range is printed at the right of the first strip. Panels may differ in
/// size; narrower ones are padded with black on the right.
pub fn stacked_spectrograms_png(
    panels: &[(&str, Spectrogram<'_>)],
    style: &SpectrogramStyle,
) -> Result<Vec<u8>, MetricsError> {
    const WHAT: &str = "stacked_spectrograms_png";
    if panels.is_empty() {
        return Err(MetricsError::Invalid {
            what: WHAT.into(),
            message: "no panels".into(),
        });
    }
    style.check(WHAT)?;
    let mut width = 0u32;
    let mut height = 0i64;
    for (i, (_, spec)) in panels.iter().enumerate() {
        spec.check(WHAT)?;
        width = width.max(checked_dim(spec.frames, style.x_scale, WHAT)?);
        height += LABEL_H + i64::from(checked_dim(spec.n_mels, style.y_scale, WHAT)?);
        if i > 0 {
            height += SEPARATOR_H;
        }
    }
    let label_w = panels.iter().map(|(l, _)| text_width(l)).max().unwrap_or(0) + 4;
    let width = width.max(label_w as u32).max(16);
    let height = u32::try_from(height).unwrap_or(u32::MAX);
    let vmax = panels
        .iter()
        .filter_map(|(_, s)| s.max_db())
        .reduce(f32::max)
        .unwrap_or(0.0);

    let mut canvas = Canvas::new(width, height, BLACK);
    let mut y = 0i64;
    for (i, (label, spec)) in panels.iter().enumerate() {
        if i > 0 {
            canvas.fill_rect(0, y, i64::from(width), SEPARATOR_H, WHITE);
            y += SEPARATOR_H;
        }
        canvas.fill_rect(0, y, i64::from(width), LABEL_H, HEADER_BG);
        let lw = canvas.text(2, y + 2, label, WHITE);
        if i == 0 {
            let range = format!(
                "{} .. {} dB",
                format_number(f64::from(vmax - style.top_db)),
                format_number(f64::from(vmax))
            );
            let rx = i64::from(width) - text_width(&range) - 2;
            if rx > lw + 2 + ADVANCE {
                canvas.text(rx, y + 2, &range, [200, 200, 200]);
            }
        }
        y += LABEL_H;
        paint_spectrogram(&mut canvas, 0, y, spec, vmax, style);
        y += spec.n_mels as i64 * i64::from(style.y_scale);
    }
    canvas.encode("stacked spectrograms")
}

/// Renders `reference`, `before` and `after` (e.g. the target, the model's output at the
/// previous evaluation and now) stacked with [`stacked_spectrograms_png`], labelled
/// "reference", "before" and "after".
pub fn before_after_png(
    reference: Spectrogram<'_>,
    before: Spectrogram<'_>,
    after: Spectrogram<'_>,
    style: &SpectrogramStyle,
) -> Result<Vec<u8>, MetricsError> {
    stacked_spectrograms_png(
        &[
            ("reference", reference),
            ("before", before),
            ("after", after),
        ],
        style,
    )
}

// ---------------------------------------------------------------------------------------------
// Loss curves
// ---------------------------------------------------------------------------------------------

/// Line colours (matplotlib's tab10), cycled.
const PALETTE: [u32; 10] = [
    0x1F77B4, 0xFF7F0E, 0x2CA02C, 0xD62728, 0x9467BD, 0x8C564B, 0xE377C2, 0x7F7F7F, 0xBCBD22,
    0x17BECF,
];

/// A compact label for a tick value: up to 4 significant digits, scientific notation outside
/// `[1e-3, 1e5)`.
fn format_number(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if (1e-3..1e5).contains(&a) {
        let decimals = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let s = format!("{v:.decimals$}");
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        if s == "-0" {
            "0".into()
        } else {
            s
        }
    } else {
        let s = format!("{v:.2e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let m = if m.contains('.') {
                    m.trim_end_matches('0').trim_end_matches('.')
                } else {
                    m
                };
                format!("{m}e{e}")
            }
            None => s,
        }
    }
}

/// Renders training curves as a `width × height` PNG line plot: step on x, value on y
/// (log₁₀ scale with `log_y`, where values ≤ 0 are skipped), one colour per series, a legend
/// at the top right, axes with tick labels (including the minimum and maximum of each axis)
/// and light grid lines. Non-finite values break a line. Points need not be sorted.
///
/// `width` must be at least 160 and `height` at least 100 pixels (at most 8192 each).
pub fn loss_curves_png(
    series: &[(&str, &[(u64, f64)])],
    width: u32,
    height: u32,
    log_y: bool,
) -> Result<Vec<u8>, MetricsError> {
    const WHAT: &str = "loss_curves_png";
    if !(160..=8192).contains(&width) || !(100..=8192).contains(&height) {
        return Err(MetricsError::Invalid {
            what: WHAT.into(),
            message: format!("size {width} × {height} outside 160..=8192 × 100..=8192"),
        });
    }
    let ty = |v: f64| if log_y { v.log10() } else { v };
    let valid = |v: f64| v.is_finite() && (!log_y || v > 0.0);

    // Data ranges (x in steps, y in transformed units).
    let mut xr: Option<(f64, f64)> = None;
    let mut yr: Option<(f64, f64)> = None;
    for (_, pts) in series {
        for &(s, v) in pts.iter() {
            if valid(v) {
                let (x, y) = (s as f64, ty(v));
                xr = Some(xr.map_or((x, x), |(a, b)| (a.min(x), b.max(x))));
                yr = Some(yr.map_or((y, y), |(a, b)| (a.min(y), b.max(y))));
            }
        }
    }
    let (mut x_lo, mut x_hi) = xr.unwrap_or((0.0, 1.0));
    if x_hi <= x_lo {
        x_lo -= 1.0;
        x_hi += 1.0;
    }
    let (mut y_lo, mut y_hi) = yr.unwrap_or((0.0, 1.0));
    if y_hi <= y_lo {
        let pad = if log_y {
            0.5
        } else {
            (y_lo.abs() * 0.1).max(1e-12)
        };
        y_lo -= pad;
        y_hi += pad;
    }
    let pad = (y_hi - y_lo) * 0.04;
    let (y_lo, y_hi) = (y_lo - pad, y_hi + pad);

    // Ticks and layout.
    let (w, h) = (i64::from(width), i64::from(height));
    let n_y_ticks = ((h - 40) / 40).clamp(2, 8) as usize;
    let y_ticks: Vec<(f64, String)> = (0..n_y_ticks)
        .map(|i| {
            let t = y_lo + (y_hi - y_lo) * i as f64 / (n_y_ticks - 1) as f64;
            let shown = if log_y { 10f64.powf(t) } else { t };
            (t, format_number(shown))
        })
        .collect();
    let left = y_ticks
        .iter()
        .map(|(_, l)| text_width(l))
        .max()
        .unwrap_or(0)
        + 10;
    let (right, top, bottom) = (12i64, 8i64, GLYPH_H + 10);
    let (px0, px1, py0, py1) = (left, w - right, top, h - bottom);
    let (pw, ph) = ((px1 - px0) as f64, (py1 - py0) as f64);
    let map_x = |x: f64| px0 as f64 + (x - x_lo) / (x_hi - x_lo) * pw;
    let map_y = |y: f64| py1 as f64 - (y - y_lo) / (y_hi - y_lo) * ph;

    let mut canvas = Canvas::new(width, height, WHITE);

    // Grid and y tick labels.
    for (t, label) in &y_ticks {
        let y = map_y(*t).round() as i64;
        for x in px0..=px1 {
            canvas.set(x, y, GRID);
        }
        canvas.fill_rect(px0 - 3, y, 3, 1, BLACK);
        let ly = (y - GLYPH_H / 2).clamp(0, h - GLYPH_H);
        canvas.text(px0 - 5 - text_width(label), ly, label, TEXT);
    }
    // x ticks: evenly spaced integer steps, first and last at the data range.
    let max_label = text_width(&format!("{}", x_hi.round() as i64)) + 12;
    let n_x_ticks = ((px1 - px0) / max_label.max(1)).clamp(2, 6) as usize;
    for i in 0..n_x_ticks {
        let xv = x_lo + (x_hi - x_lo) * i as f64 / (n_x_ticks - 1) as f64;
        let x = map_x(xv).round() as i64;
        for y in py0..=py1 {
            canvas.set(x, y, GRID);
        }
        canvas.fill_rect(x, py1 + 1, 1, 3, BLACK);
        let label = format!("{}", xv.round() as i64);
        let lw = text_width(&label);
        let lx = (x - lw / 2).clamp(0, w - lw);
        canvas.text(lx, py1 + 5, &label, TEXT);
    }
    // Axes.
    for x in px0..=px1 {
        canvas.set(x, py1, BLACK);
    }
    for y in py0..=py1 {
        canvas.set(px0, y, BLACK);
    }

    // Curves, clipped to the plot area.
    let clip = (px0 + 1, py0, px1, py1 - 1);
    for (k, (_, pts)) in series.iter().enumerate() {
        let color = rgb_of(PALETTE[k % PALETTE.len()]);
        let mut sorted: Vec<(u64, f64)> = pts.to_vec();
        sorted.sort_by_key(|p| p.0);
        let mut prev: Option<(f64, f64)> = None;
        let mut run_len = 0usize;
        for (i, &(s, v)) in sorted.iter().enumerate() {
            if !valid(v) {
                if run_len == 1 {
                    if let Some(p) = prev {
                        dot(&mut canvas, p, color, clip);
                    }
                }
                prev = None;
                run_len = 0;
                continue;
            }
            let p = (map_x(s as f64), map_y(ty(v)));
            if let Some(q) = prev {
                wu_line(&mut canvas, q, p, color, clip);
            }
            prev = Some(p);
            run_len += 1;
            if i + 1 == sorted.len() && run_len == 1 {
                dot(&mut canvas, p, color, clip);
            }
        }
    }

    // Legend.
    if !series.is_empty() {
        let name_w = series.iter().map(|(n, _)| text_width(n)).max().unwrap_or(0);
        let row_h = GLYPH_H + 4;
        let box_w = 4 + 14 + 4 + name_w + 5;
        let box_h = 3 + row_h * series.len() as i64 + 1;
        let bx = (px1 - box_w - 4).max(px0 + 2);
        let by = py0 + 4;
        canvas.fill_rect(bx, by, box_w, box_h, WHITE);
        for x in bx..bx + box_w {
            canvas.set(x, by, FRAME_GREY);
            canvas.set(x, by + box_h - 1, FRAME_GREY);
        }
        for y in by..by + box_h {
            canvas.set(bx, y, FRAME_GREY);
            canvas.set(bx + box_w - 1, y, FRAME_GREY);
        }
        for (k, (name, _)) in series.iter().enumerate() {
            let color = rgb_of(PALETTE[k % PALETTE.len()]);
            let ry = by + 3 + row_h * k as i64;
            canvas.fill_rect(bx + 4, ry + 3, 14, 2, color);
            canvas.text(bx + 4 + 14 + 4, ry, name, TEXT);
        }
    }
    if xr.is_none() {
        let msg = "no data";
        canvas.text(
            px0 + (px1 - px0 - text_width(msg)) / 2,
            py0 + (py1 - py0 - GLYPH_H) / 2,
            msg,
            TEXT,
        );
    }
    canvas.encode("loss curves")
}

/// Clip rectangle `(x0, y0, x1, y1)`, inclusive.
type Clip = (i64, i64, i64, i64);

fn plot(canvas: &mut Canvas, x: i64, y: i64, c: Rgb, alpha: f32, clip: Clip) {
    if x >= clip.0 && x <= clip.2 && y >= clip.1 && y <= clip.3 {
        canvas.blend(x, y, c, alpha);
    }
}

/// A 2 × 2 dot for an isolated point.
fn dot(canvas: &mut Canvas, p: (f64, f64), c: Rgb, clip: Clip) {
    let (x, y) = (p.0.round() as i64, p.1.round() as i64);
    for (dx, dy) in [(0, 0), (-1, 0), (0, -1), (-1, -1)] {
        plot(canvas, x + dx, y + dy, c, 1.0, clip);
    }
}

/// An anti-aliased line (Xiaolin Wu's algorithm) from `a` to `b`.
fn wu_line(canvas: &mut Canvas, a: (f64, f64), b: (f64, f64), c: Rgb, clip: Clip) {
    let (mut x0, mut y0, mut x1, mut y1) = (a.0, a.1, b.0, b.1);
    let steep = (y1 - y0).abs() > (x1 - x0).abs();
    if steep {
        std::mem::swap(&mut x0, &mut y0);
        std::mem::swap(&mut x1, &mut y1);
    }
    if x0 > x1 {
        std::mem::swap(&mut x0, &mut x1);
        std::mem::swap(&mut y0, &mut y1);
    }
    let dx = x1 - x0;
    let gradient = if dx.abs() < 1e-9 { 0.0 } else { (y1 - y0) / dx };
    let mut put = |x: i64, y: i64, alpha: f64| {
        if steep {
            plot(canvas, y, x, c, alpha as f32, clip);
        } else {
            plot(canvas, x, y, c, alpha as f32, clip);
        }
    };
    let xs = x0.round() as i64;
    let xe = x1.round() as i64;
    for x in xs..=xe {
        let y = y0 + gradient * (x as f64 - x0);
        let yf = y.floor();
        let frac = y - yf;
        put(x, yf as i64, 1.0 - frac);
        put(x, yf as i64 + 1, frac);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> [u8; 3] {
        let i = ((y * img.0 + x) * 3) as usize;
        [img.2[i], img.2[i + 1], img.2[i + 2]]
    }

    /// A test spectrogram: loud low bands, quiet high bands.
    fn ramp(n_mels: usize, frames: usize) -> Vec<f32> {
        (0..n_mels * frames)
            .map(|i| {
                let (m, t) = (i / frames, i % frames);
                -(m as f32) * 100.0 / n_mels as f32 + (t as f32 * 0.3).sin() * 5.0
            })
            .collect()
    }

    #[test]
    fn colormaps_hit_their_endpoints() {
        assert_eq!(Colormap::Viridis.rgb(0.0), [0x44, 0x01, 0x54]);
        assert_eq!(Colormap::Viridis.rgb(1.0), [0xFD, 0xE7, 0x25]);
        assert_eq!(Colormap::Magma.rgb(0.0), [0, 0, 4]);
        assert_eq!(Colormap::Viridis.rgb(f32::NAN), Colormap::Viridis.rgb(0.0));
        assert_eq!(Colormap::Viridis.rgb(7.0), Colormap::Viridis.rgb(1.0));
    }

    #[test]
    fn spectrogram_is_a_valid_png_with_low_frequencies_at_the_bottom() {
        let (n_mels, frames) = (80, 120);
        let mut db = ramp(n_mels, frames);
        db[5] = f32::NAN;
        db[6] = f32::NEG_INFINITY;
        let png = spectrogram_png(&db, n_mels, frames, &SpectrogramStyle::default()).unwrap();
        assert_eq!(png_size(&png), Some((120, 160)));
        let img = decode(&png);
        assert_eq!((img.0, img.1), (120, 160));
        // Band 0 (loudest) is the bottom row, near the top of the colour map; the top row
        // (quietest, below max - 80 dB) is the bottom of the map.
        let bottom = pixel(&img, 50, 159);
        let top = pixel(&img, 50, 0);
        assert!(bottom[1] > 150, "{bottom:?}");
        assert_eq!(top, Colormap::Viridis.rgb(0.0));
        // Non-finite values are drawn as the minimum.
        assert_eq!(pixel(&img, 5, 159), Colormap::Viridis.rgb(0.0));

        assert!(spectrogram_png(&db, 81, frames, &SpectrogramStyle::default()).is_err());
        assert!(spectrogram_png(&[], 0, 0, &SpectrogramStyle::default()).is_err());
        let style = SpectrogramStyle {
            x_scale: 0,
            ..Default::default()
        };
        assert!(spectrogram_png(&db, n_mels, frames, &style).is_err());
    }

    #[test]
    fn before_after_stacks_three_panels() {
        let reference = ramp(64, 100);
        let before: Vec<f32> = reference.iter().map(|v| v - 20.0).collect();
        let after = ramp(64, 90);
        let style = SpectrogramStyle::default();
        let png = before_after_png(
            Spectrogram::new(&reference, 64, 100).unwrap(),
            Spectrogram::new(&before, 64, 100).unwrap(),
            Spectrogram::new(&after, 64, 90).unwrap(),
            &style,
        )
        .unwrap();
        let img = decode(&png);
        let panel = 64 * 2;
        assert_eq!(img.0, 100);
        assert_eq!(img.1 as i64, 3 * (LABEL_H + panel) + 2 * SEPARATOR_H);
        // Separator rows are white, label strips dark.
        let sep_y = (LABEL_H + panel) as u32;
        assert_eq!(pixel(&img, 50, sep_y), WHITE);
        assert_eq!(pixel(&img, 99, 0), HEADER_BG);
        // The narrower "after" panel is padded with black.
        assert_eq!(pixel(&img, 95, img.1 - 1), BLACK);
        assert!(Spectrogram::new(&reference, 64, 99).is_err());
    }

    #[test]
    fn loss_curves_are_valid_pngs() {
        let a: Vec<(u64, f64)> = (0..500)
            .map(|s| (s * 10, 5.0 * (-(s as f64) / 100.0).exp() + 0.1))
            .collect();
        let mut b: Vec<(u64, f64)> = (0..500)
            .map(|s| (s * 10, 1.0 + (s as f64 * 0.1).sin() * 0.2))
            .collect();
        b[100].1 = f64::NAN;
        b[200].1 = -1.0; // skipped on a log scale
        for log_y in [false, true] {
            let png =
                loss_curves_png(&[("loss/total", &a), ("loss/mel", &b)], 640, 360, log_y).unwrap();
            let img = decode(&png);
            assert_eq!((img.0, img.1), (640, 360));
            // Both series colours appear.
            for c in [PALETTE[0], PALETTE[1]] {
                let c = rgb_of(c);
                assert!(img.2.chunks(3).any(|p| p == c), "{c:?} missing");
            }
        }
        // Degenerate inputs still render.
        let one = [(5u64, 2.0)];
        let png = loss_curves_png(&[("x", &one)], 200, 120, true).unwrap();
        assert_eq!(decode(&png).0, 200);
        let png = loss_curves_png(&[], 200, 120, false).unwrap();
        assert_eq!(decode(&png).1, 120);
        assert!(loss_curves_png(&[], 10, 10, false).is_err());
    }

    #[test]
    fn number_labels_are_compact() {
        assert_eq!(format_number(0.0), "0");
        assert_eq!(format_number(1.0), "1");
        assert_eq!(format_number(0.12345), "0.1235");
        assert_eq!(format_number(1234.6), "1235");
        assert_eq!(format_number(2.5e-5), "2.5e-5");
        assert_eq!(format_number(-80.0), "-80");
        assert_eq!(format_number(1.0e6), "1e6");
    }

    /// Writes sample images to `$LOSATOK_METRICS_PNG_DIR` for a visual check (ignored unless
    /// that variable is set).
    #[test]
    fn write_samples_for_inspection() {
        let Some(dir) = std::env::var_os("LOSATOK_METRICS_PNG_DIR") else {
            return;
        };
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (n_mels, frames) = (80, 300);
        let reference: Vec<f32> = (0..n_mels * frames)
            .map(|i| {
                let (m, t) = ((i / frames) as f32, (i % frames) as f32);
                let harmonic = ((m * 0.7 + (t * 0.05).sin() * 3.0).sin() * 0.5 + 0.5) * 25.0;
                -m * 0.8 + harmonic
                    - if (t as usize / 60).is_multiple_of(2) {
                        0.0
                    } else {
                        30.0
                    }
            })
            .collect();
        let before: Vec<f32> = reference
            .iter()
            .enumerate()
            .map(|(i, v)| v - 10.0 + ((i * 7919) % 13) as f32)
            .collect();
        let after: Vec<f32> = reference.iter().map(|v| v - 2.0).collect();
        let style = SpectrogramStyle::default();
        let png = spectrogram_png(&reference, n_mels, frames, &style).unwrap();
        std::fs::write(dir.join("spectrogram.png"), png).unwrap();
        let png = before_after_png(
            Spectrogram::new(&reference, n_mels, frames).unwrap(),
            Spectrogram::new(&before, n_mels, frames).unwrap(),
            Spectrogram::new(&after, n_mels, frames).unwrap(),
            &SpectrogramStyle {
                colormap: Colormap::Magma,
                ..style
            },
        )
        .unwrap();
        std::fs::write(dir.join("before_after.png"), png).unwrap();
        let a: Vec<(u64, f64)> = (0..2000)
            .map(|s| {
                (
                    s * 5,
                    5.0 * (-(s as f64) / 300.0).exp() + 0.2 + 0.05 * ((s * 37 % 17) as f64 / 17.0),
                )
            })
            .collect();
        let b: Vec<(u64, f64)> = (0..2000)
            .map(|s| (s * 5, 1.0 + (s as f64 * 0.01).sin() * 0.3))
            .collect();
        let c: Vec<(u64, f64)> = (0..400)
            .map(|s| (s * 25, 0.05 + 0.5 / (1.0 + s as f64)))
            .collect();
        let series: [(&str, &[(u64, f64)]); 3] =
            [("loss/total", &a), ("loss/mel_l1", &b), ("disc/fake", &c)];
        for log_y in [false, true] {
            let png = loss_curves_png(&series, 640, 360, log_y).unwrap();
            std::fs::write(dir.join(format!("loss_curves_log{log_y}.png")), png).unwrap();
        }
    }
}
