//! Audio input/output for LoSATok.
//!
//! * Reading: WAV (8-bit unsigned, 16/24/32-bit integer, 32/64-bit float PCM, plus the
//!   ADPCM / A-law / mu-law encodings symphonia knows), FLAC, Ogg/Vorbis and MP3, at any
//!   sample rate and channel count ([`decode`], [`AudioDecoder`], [`probe`]).
//! * [`load`] / [`Mono16kStream`]: a file as 16 kHz mono f32, matching
//!   `librosa.load(path, sr=16000, mono=True)` (libsndfile scaling, NumPy channel mean,
//!   python-soxr `soxr_hq` resampling and librosa's length rule). The stream gives the same
//!   samples as [`load`] in bounded memory.
//! * [`resample_to_16k`], [`resample`], [`StreamingResampler`]: the resampling step alone.
//!   libsoxr is built (crate `losatok-soxr-sys`) like python-soxr's, so on x86-64 the
//!   output is bit-identical to librosa's. libsoxr chooses its SIMD engine at run time;
//!   setting `SOXR_USE_SIMD=0` in the environment switches it (and python-soxr) to the
//!   scalar engine, whose output differs by up to ~1e-6. See the `resample` module docs.
//! * Writing: [`write_wav`], [`write_wav_no_overwrite`] and the streaming [`WavWriter`]
//!   write 32-bit float (default) or 16-bit PCM WAV atomically.
//! * Folders: [`walk()`] lists the audio files of a tree and reports what it passes over.
//!
//! All failures are reported as [`AudioError`], whose messages are single lines that name
//! the file concerned. No input file makes this crate panic.

#![warn(missing_docs)]

mod decode;
mod error;
pub mod mix;
mod resample;
mod stream;
pub mod walk;
mod wav;

pub use decode::{
    decode, probe, AudioDecoder, AudioInfo, Container, DecodedAudio, PcmEncoding,
    DEFAULT_BLOCK_FRAMES,
};
pub use error::{AudioError, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
pub use mix::{downmix, downmix_interleaved};
pub use resample::{
    resample, resample_to_16k, resampled_len, StreamingResampler, TARGET_SAMPLE_RATE,
};
pub use stream::{load, Mono16kStream};
pub use walk::{
    has_extension, is_audio_path, walk, SkipReason, Walk, WalkOptions, AUDIO_EXTENSIONS,
};
pub use wav::{write_wav, write_wav_no_overwrite, WavFormat, WavSpec, WavWriter};

#[cfg(test)]
mod tests {
    use super::*;

    /// The streaming types can be moved to worker threads.
    #[test]
    fn streaming_types_are_send() {
        fn is_send<T: Send>() {}
        is_send::<AudioDecoder>();
        is_send::<Mono16kStream>();
        is_send::<StreamingResampler>();
        is_send::<WavWriter>();
        is_send::<AudioError>();
    }
}
