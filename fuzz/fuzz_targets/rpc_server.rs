//! ipamd's side of the plugin RPC: request frames as a byte stream (length prefix + JSON), and
//! the whole input as one frame body; each request is dispatched and its reply must read back.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use vpc_cni::rpc::{
    dispatch, read_frame, write_frame, AddNetworkReply, AddNetworkRequest, AddressManager,
    DelNetworkReply, DelNetworkRequest, GcReply, GcRequest, ReplyFrame, Request, RpcCode, RpcError,
    StatusReply,
};

struct Manager;

impl AddressManager for Manager {
    fn add_network(&self, req: &AddNetworkRequest) -> Result<AddNetworkReply, RpcError> {
        if req.container_id.is_empty() {
            return Err(RpcError::new(RpcCode::InvalidArgument, "no container id"));
        }
        Ok(AddNetworkReply::default())
    }
    fn del_network(&self, req: &DelNetworkRequest) -> Result<DelNetworkReply, RpcError> {
        Err(RpcError::new(RpcCode::NotFound, format!("{req:?}")))
    }
    fn status(&self) -> StatusReply {
        StatusReply::default()
    }
    fn gc_network(&self, _: &GcRequest) -> Result<GcReply, RpcError> {
        Ok(GcReply::default())
    }
}

fn serve(req: Request) {
    let again: Request = {
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).expect("a request encodes");
        read_frame(&mut Cursor::new(buf))
            .expect("reads back")
            .expect("one frame")
    };
    assert_eq!(again, req);
    let reply = dispatch(&Manager, req);
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
        match read_frame::<Request>(&mut stream) {
            Ok(Some(req)) => serve(req),
            Ok(None) | Err(_) => break,
        }
    }
    let mut frame = (data.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(data);
    if let Ok(Some(req)) = read_frame::<Request>(&mut Cursor::new(frame)) {
        serve(req);
    }
});
