//! The plugin's side of the RPC: reply frames from ipamd as a byte stream, and the whole input
//! as one frame body; each reply must encode and read back to itself.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use vpc_cni::rpc::{read_frame, write_frame, ReplyFrame};

fn check(reply: ReplyFrame) {
    let mut buf = Vec::new();
    write_frame(&mut buf, &reply).expect("a reply encodes");
    let back: ReplyFrame = read_frame(&mut Cursor::new(buf))
        .expect("reads")
        .expect("a frame");
    assert_eq!(back, reply);
}

fuzz_target!(|data: &[u8]| {
    let mut stream = Cursor::new(data);
    for _ in 0..8 {
        match read_frame::<ReplyFrame>(&mut stream) {
            Ok(Some(r)) => check(r),
            Ok(None) | Err(_) => break,
        }
    }
    let mut frame = (data.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(data);
    if let Ok(Some(r)) = read_frame::<ReplyFrame>(&mut Cursor::new(frame)) {
        check(r);
    }
});
