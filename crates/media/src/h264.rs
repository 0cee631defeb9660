//! H.264 in MP4 to the byte stream RTP packetisers take: MP4 stores each NAL unit behind its
//! length (ISO/IEC 14496-15 §5.3.2, the `avcC` box gives the length's size and the parameter
//! sets), RTP packetisers split an Annex-B stream on start codes (ITU-T H.264 Annex B).

use crate::MediaError;

/// What an `avcC` box (AVCDecoderConfigurationRecord, ISO/IEC 14496-15 §5.3.3.1) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication`, `profile_compatibility`, `AVCLevelIndication`: SDP's
    /// `profile-level-id` (RFC 6184 §8.1).
    pub profile_level_id: [u8; 3],
    /// Bytes in each NAL unit's length prefix (1, 2 or 4).
    pub length_size: usize,
    /// Sequence parameter sets.
    pub sps: Vec<Vec<u8>>,
    /// Picture parameter sets.
    pub pps: Vec<Vec<u8>>,
}

impl AvcConfig {
    /// Parses the body of an `avcC` box.
    ///
    /// # Errors
    /// [`MediaError::Malformed`] when it is cut short or says a length size of 3.
    pub fn parse(avcc: &[u8]) -> Result<Self, MediaError> {
        let mut cursor = Cursor { bytes: avcc, at: 0 };
        let header = cursor.take(5)?;
        if header[0] != 1 {
            return Err(bad("not configuration version 1"));
        }
        let profile_level_id = [header[1], header[2], header[3]];
        let length_size = usize::from(header[4] & 0b11) + 1;
        if length_size == 3 {
            return Err(bad("a 3-byte NAL length"));
        }
        let sps_count = usize::from(cursor.take(1)?[0] & 0x1f);
        let sps = cursor.sets(sps_count)?;
        let pps_count = usize::from(cursor.take(1)?[0]);
        let pps = cursor.sets(pps_count)?;
        Ok(Self {
            profile_level_id,
            length_size,
            sps,
            pps,
        })
    }

    /// SDP's `profile-level-id`, six hex digits.
    pub fn profile_level_id_hex(&self) -> String {
        self.profile_level_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// One sample as an Annex-B access unit: each NAL unit behind a 4-byte start code, the
    /// parameter sets first on a keyframe (a viewer that joins or lost packets decodes from
    /// any keyframe).
    ///
    /// # Errors
    /// [`MediaError::Malformed`] when a length runs past the sample.
    pub fn to_annex_b(&self, sample: &[u8], keyframe: bool) -> Result<Vec<u8>, MediaError> {
        const START: [u8; 4] = [0, 0, 0, 1];
        let mut out = Vec::with_capacity(sample.len() + 64);
        if keyframe {
            for set in self.sps.iter().chain(&self.pps) {
                out.extend_from_slice(&START);
                out.extend_from_slice(set);
            }
        }
        let mut rest = sample;
        while !rest.is_empty() {
            let (len, after) = rest
                .split_at_checked(self.length_size)
                .ok_or_else(|| MediaError::Malformed("H.264 sample: a cut NAL length".into()))?;
            let len = len.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
            let (nal, after) = after.split_at_checked(len).ok_or_else(|| {
                MediaError::Malformed("H.264 sample: a NAL unit longer than the sample".into())
            })?;
            out.extend_from_slice(&START);
            out.extend_from_slice(nal);
            rest = after;
        }
        Ok(out)
    }
}

fn bad(what: &str) -> MediaError {
    MediaError::Malformed(format!("avcC: {what}"))
}

/// Reads an `avcC` body front to back.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], MediaError> {
        let bytes = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| bad("cut short"))?;
        self.at += n;
        Ok(bytes)
    }

    /// `count` parameter sets, each behind a 16-bit length.
    fn sets(&mut self, count: usize) -> Result<Vec<Vec<u8>>, MediaError> {
        (0..count)
            .map(|_| {
                let len = self.take(2)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                Ok(self.take(len)?.to_vec())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avcc() -> Vec<u8> {
        let mut b = vec![
            1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 3, 0x67, 1, 2, 1, 0, 2, 0x68, 9,
        ];
        b.truncate(16);
        b
    }

    #[test]
    fn reads_the_parameter_sets_and_rewrites_lengths_as_start_codes() {
        let config = AvcConfig::parse(&avcc()).expect("parse");
        assert_eq!(config.profile_level_id_hex(), "64001f");
        assert_eq!(config.length_size, 4);
        assert_eq!(config.sps, vec![vec![0x67, 1, 2]]);
        assert_eq!(config.pps, vec![vec![0x68, 9]]);
        let sample = [0, 0, 0, 2, 0x65, 7, 0, 0, 0, 1, 0x06];
        assert_eq!(
            config.to_annex_b(&sample, false).expect("convert"),
            [0, 0, 0, 1, 0x65, 7, 0, 0, 0, 1, 0x06]
        );
        let key = config.to_annex_b(&sample, true).expect("convert");
        assert_eq!(&key[..7], &[0, 0, 0, 1, 0x67, 1, 2]);
        assert!(config.to_annex_b(&[0, 0, 0, 9, 1], false).is_err());
        assert!(AvcConfig::parse(&avcc()[..10]).is_err());
    }
}
