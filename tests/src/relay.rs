//! A TCP relay between a data plane and its control plane that a test can cut and restore,
//! to simulate a network partition without touching either process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards every connection on `addr` to a target while open.
pub struct Relay {
    /// Where data planes dial.
    pub addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    cut: watch::Sender<Cut>,
}

/// What happens to the connections being relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Relaying.
    None,
    /// Closed (reset seen by both ends).
    Drop(u64),
    /// Open but silent.
    Freeze,
}

impl Relay {
    /// Starts relaying to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the relay");
        let addr = listener.local_addr().expect("relay address");
        let blocked = Arc::new(AtomicBool::new(false));
        let (cut, _) = watch::channel(Cut::None);
        let relay = Self {
            addr,
            blocked: blocked.clone(),
            cut: cut.clone(),
        };
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if blocked.load(Ordering::SeqCst) {
                    // Dropping the socket: the dialler sees a reset, as with a dead link.
                    continue;
                }
                let mut cut_rx = cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => return,
                        _ = cut_rx.changed() => {}
                    }
                    if *cut_rx.borrow() == Cut::Freeze {
                        // Keep both sockets open but move no bytes: a silent peer, the case
                        // heartbeats exist for. Released at the next cut.
                        let _ = cut_rx.changed().await;
                    }
                    drop((inbound, outbound));
                });
            }
        });
        relay
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        self.cut.send_modify(|c| {
            *c = match *c {
                Cut::Drop(n) => Cut::Drop(n + 1),
                _ => Cut::Drop(0),
            }
        });
    }

    /// Existing connections stay open but carry nothing more; new ones are relayed.
    pub fn freeze(&self) {
        self.cut.send_replace(Cut::Freeze);
    }

    /// Accepts and relays again.
    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}
