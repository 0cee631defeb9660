//! Live mode's source side on real files (issue 12, item 1): `shoal_media` reads an MP4 with
//! B-frames and a WebM with Opus as ffmpeg wrote them, sample for sample as ffprobe counts
//! them, and schedules them from one anchor.

#![allow(clippy::unwrap_used)]

use shoal_e2e::{ffprobe_packets, live_h264_aac, live_vp8_opus};
use shoal_media::{Codec, MediaFile, RtpClock, Schedule};

/// Every sample of a file, in the order it gives them.
fn all_samples(file: &mut MediaFile) -> Vec<shoal_media::Sample> {
    std::iter::from_fn(|| file.next_sample().unwrap()).collect()
}

#[test]
fn a_webm_gives_every_vp8_and_opus_frame_and_loops() {
    let path = live_vp8_opus();
    let mut file = MediaFile::open(&path).unwrap();
    let codecs: Vec<Codec> = file.tracks().iter().map(|t| t.codec).collect();
    assert_eq!(codecs, [Codec::Vp8, Codec::Opus]);
    assert_eq!(
        (file.tracks()[0].width, file.tracks()[0].height),
        (640, 360)
    );
    let length = file.length();
    let secs = length.ticks as f64 / f64::from(length.timescale);
    assert!((secs - 10.0).abs() < 0.1, "{secs} s");

    let samples = all_samples(&mut file);
    let video: Vec<_> = samples.iter().filter(|s| s.track == 0).collect();
    let audio: Vec<_> = samples.iter().filter(|s| s.track == 1).collect();
    assert_eq!(video.len() as u64, ffprobe_packets(&path, "v:0"));
    assert_eq!(audio.len() as u64, ffprobe_packets(&path, "a:0"));
    // A keyframe every 2 s, the first frame one (ffmpeg starts the video a few ms after the
    // audio).
    let first = video[0].present.ticks;
    assert!(video[0].keyframe);
    let keys: Vec<i64> = video
        .iter()
        .filter(|s| s.keyframe)
        .map(|s| (s.present.ticks - first) / 1_000_000)
        .collect();
    assert_eq!(keys, [0, 2000, 4000, 6000, 8000]);
    // Opus in 20 ms frames, with WebM's 1 ms timestamps (each rounded: 20 or 21 ms apart,
    // 20 ms on average).
    for pair in audio.windows(2) {
        let gap_ms = (pair[1].present.ticks - pair[0].present.ticks) / 1_000_000;
        assert!((19..=21).contains(&gap_ms), "{gap_ms} ms");
    }
    let span = audio[audio.len() - 1].present.ticks - audio[0].present.ticks;
    let mean_us = span / 1000 / (audio.len() as i64 - 1);
    assert!((19_900..=20_100).contains(&mean_us), "{mean_us} us");

    // Scheduled from one anchor: video at 25 fps is 3600 ticks of 90 kHz apart, exactly.
    let schedule = Schedule::new(
        file.start(),
        length,
        vec![
            RtpClock {
                rate: 90_000,
                base: 1,
            },
            RtpClock {
                rate: 48_000,
                base: 2,
            },
        ],
    );
    let slots: Vec<_> = video
        .iter()
        .map(|s| schedule.slot(0, s.decode, s.present, 0).unwrap())
        .collect();
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1].rtp_timestamp.wrapping_sub(pair[0].rtp_timestamp),
            3600
        );
        assert_eq!((pair[1].at - pair[0].at).as_millis(), 40);
    }

    // The next lap gives the same samples.
    file.rewind().unwrap();
    assert_eq!(file.next_sample().unwrap().as_ref(), samples.first());
}

#[test]
fn an_mp4_with_b_frames_gives_annex_b_access_units_in_decode_order() {
    let path = live_h264_aac();
    let mut file = MediaFile::open(&path).unwrap();
    let codecs: Vec<Codec> = file.tracks().iter().map(|t| t.codec).collect();
    assert_eq!(codecs, [Codec::H264], "AAC cannot go over WebRTC");
    assert!(
        file.skipped().iter().any(|s| s.contains("(AAC)")),
        "{:?}",
        file.skipped()
    );
    let avc = file.tracks()[0].avc.clone().unwrap();
    assert_eq!(avc.sps.len(), 1);
    assert_eq!(&avc.profile_level_id_hex()[..2], "64", "High profile");

    let samples = all_samples(&mut file);
    assert_eq!(samples.len() as u64, ffprobe_packets(&path, "v:0"));
    let reordered = samples.iter().filter(|s| s.present != s.decode).count();
    assert!(reordered > 100, "B-frames: {reordered} samples reordered");
    for pair in samples.windows(2) {
        assert!(pair[0].decode.ticks < pair[1].decode.ticks, "decode order");
    }
    for s in &samples {
        assert_eq!(&s.data[..4], &[0, 0, 0, 1], "Annex-B start code");
        if s.keyframe {
            assert_eq!(s.data[4] & 0x1f, 7, "an SPS before each keyframe");
        }
    }
    assert_eq!(samples.iter().filter(|s| s.keyframe).count(), 5);

    // Sent in decode order, stamped in presentation order: the RTP timestamps of a B-frame
    // group are not monotonic, the send times are.
    let schedule = Schedule::new(
        file.start(),
        file.length(),
        vec![RtpClock {
            rate: 90_000,
            base: 0,
        }],
    );
    let slots: Vec<_> = samples
        .iter()
        .map(|s| schedule.slot(0, s.decode, s.present, 1).unwrap())
        .collect();
    assert!(slots.windows(2).all(|p| p[0].at <= p[1].at));
    assert!(
        slots
            .windows(2)
            .any(|p| p[1].rtp_timestamp < p[0].rtp_timestamp)
    );
    let mut stamps: Vec<u32> = slots.iter().map(|s| s.rtp_timestamp).collect();
    stamps.sort_unstable();
    // Lap 1 starts 10 s (900 000 ticks) in, and the frames are 40 ms (3600 ticks) apart.
    assert_eq!(stamps[0], 900_000);
    assert!(stamps.windows(2).all(|p| p[1] - p[0] == 3600));
}

#[test]
fn a_file_that_is_not_media_is_refused_in_words() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "not a video at all").unwrap();
    let e = MediaFile::open(&text).unwrap_err().to_string();
    assert!(e.contains("neither MP4 nor WebM"), "{e}");
}
