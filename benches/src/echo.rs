//! The socket limit: a server on the same framing, transport and runtime as lockbox's
//! servers whose handler does nothing but answer.

use lockbox_proto::Error;
use lockbox_proto::hello::Service;
use lockbox_rpc::peer::PeerCred;
use lockbox_rpc::server::{Handler, Next, ServerConfig, respond, serve};
use std::path::Path;
use std::sync::Arc;

/// Answers every request with an empty success.
struct Echo;

impl Handler for Echo {
    type Session = ();

    fn service(&self) -> Service {
        Service::Lockbox
    }

    fn open(&self, _: PeerCred) -> Result<(), Error> {
        Ok(())
    }

    fn subject(&self, _: &()) -> String {
        "echo".into()
    }

    async fn call(&self, _: &(), body: &[u8], out: &mut Vec<u8>) -> Next {
        let id = postcard::take_from_bytes::<u64>(body).map_or(0, |(id, _)| id);
        respond::<()>(out, id, Ok(()), lockbox_proto::frame::DEFAULT_MAX_FRAME);
        Next::Continue
    }
}

/// Serves the echo handler on `socket` until interrupted.
pub(crate) async fn run(socket: &Path) -> anyhow::Result<()> {
    let listener = lockbox_rpc::listen::bind(socket, 0o660)?;
    lockbox_rpc::notify::ready();
    serve(
        listener,
        Arc::new(Echo),
        ServerConfig::default(),
        lockbox_rpc::listen::shutdown_signal(),
    )
    .await;
    Ok(())
}
