//! Handing NCCL's unique id from rank 0 to every other rank over TCP at
//! `MASTER_ADDR:MASTER_PORT`: the one thing NCCL needs from outside before it bootstraps its own
//! connections (what PyTorch's TCP store does for `init_process_group`).
//!
//! Rank 0 listens; every other rank connects (retrying while rank 0 starts up), says who it
//! is, and receives the id. Rank 0 checks that each rank comes once and that everyone agrees on
//! the world size, so two jobs that share a port, or a mis-typed `WORLD_SIZE`, fail at once
//! with a message instead of hanging inside NCCL.
//!
//! Messages: request = `MAGIC`, world size (u32 LE), rank (u32 LE); reply = `MAGIC`, status
//! byte, then the id (status 0) or a UTF-8 reason prefixed by its length (u16 LE).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{DistEnv, DistError};

/// Size of an NCCL unique id.
pub const ID_BYTES: usize = 128;

const MAGIC: &[u8; 8] = b"LSATKRV1";
const POLL: Duration = Duration::from_millis(20);
const RETRY: Duration = Duration::from_millis(200);

/// Share rank 0's id with every rank: rank 0 calls `make_id`, listens on `MASTER_PORT` and
/// serves the id to the `world_size − 1` others; they connect to `MASTER_ADDR:MASTER_PORT` and
/// receive it. Every rank returns the same bytes, or an error by `timeout`.
pub fn share_id(
    env: &DistEnv,
    make_id: impl FnOnce() -> Result<[u8; ID_BYTES], DistError>,
    timeout: Duration,
) -> Result<[u8; ID_BYTES], DistError> {
    let deadline = Instant::now() + timeout;
    if env.rank == 0 {
        let id = make_id()?;
        if env.world_size > 1 {
            let listener = listen(env)?;
            serve(&listener, env.world_size, &id, deadline)?;
        }
        Ok(id)
    } else {
        fetch(
            &env.master_addr,
            env.master_port,
            env.rank,
            env.world_size,
            deadline,
        )
    }
}

/// Rank 0's listening socket on every interface at `MASTER_PORT`.
pub fn listen(env: &DistEnv) -> Result<TcpListener, DistError> {
    let any = if env.master_addr.contains(':') {
        "[::]"
    } else {
        "0.0.0.0"
    };
    TcpListener::bind(format!("{any}:{}", env.master_port)).map_err(|e| {
        DistError::Rendezvous(format!(
            "rank 0 cannot listen on port {} ({e}); is another job using it? set MASTER_PORT",
            env.master_port
        ))
    })
}

/// Rank 0: hand `id` to ranks `1..world`, each exactly once, before `deadline`.
pub fn serve(
    listener: &TcpListener,
    world: usize,
    id: &[u8; ID_BYTES],
    deadline: Instant,
) -> Result<(), DistError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| DistError::Rendezvous(format!("rendezvous socket: {e}")))?;
    let mut served = vec![false; world];
    served[0] = true;
    while served.iter().any(|s| !s) {
        let (mut stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    let missing: Vec<String> = (0..world)
                        .filter(|&r| !served[r])
                        .map(|r| r.to_string())
                        .collect();
                    return Err(DistError::Rendezvous(format!(
                        "timed out waiting for rank(s) {} to connect to rank 0",
                        abbreviate(&missing)
                    )));
                }
                std::thread::sleep(POLL);
                continue;
            }
            Err(e) => return Err(DistError::Rendezvous(format!("accepting a rank: {e}"))),
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
        let mut req = [0u8; 16];
        if stream.read_exact(&mut req).is_err() || &req[..8] != MAGIC {
            // not one of ours (a port scanner, a health check): ignore it
            tracing::warn!("ignoring a connection from {peer} that is not a losatok rank");
            continue;
        }
        let their_world = u32::from_le_bytes(req[8..12].try_into().expect("4 bytes")) as usize;
        let rank = u32::from_le_bytes(req[12..16].try_into().expect("4 bytes")) as usize;
        let problem = if their_world != world {
            Some(format!(
                "rank {rank} at {peer} has WORLD_SIZE={their_world}, rank 0 has {world}"
            ))
        } else if rank == 0 || rank >= world {
            Some(format!("a process at {peer} claims rank {rank} of {world}"))
        } else if served[rank] {
            Some(format!(
                "rank {rank} connected twice (the second from {peer}); two jobs on one MASTER_PORT?"
            ))
        } else {
            None
        };
        match problem {
            None => {
                let mut reply = Vec::with_capacity(9 + ID_BYTES);
                reply.extend_from_slice(MAGIC);
                reply.push(0);
                reply.extend_from_slice(id);
                if let Err(e) = stream.write_all(&reply) {
                    tracing::warn!("rank {rank} at {peer} dropped the rendezvous: {e}");
                    continue; // it retries
                }
                served[rank] = true;
            }
            Some(reason) => {
                let _ = stream.write_all(&error_reply(&reason));
                return Err(DistError::Rendezvous(reason));
            }
        }
    }
    Ok(())
}

/// Any rank but 0: connect to rank 0 (retrying until it listens) and receive the id.
pub fn fetch(
    addr: &str,
    port: u16,
    rank: usize,
    world: usize,
    deadline: Instant,
) -> Result<[u8; ID_BYTES], DistError> {
    loop {
        let last_error = match try_fetch(addr, port, rank, world, deadline) {
            Ok(Ok(id)) => return Ok(id),
            Ok(Err(refused)) => return Err(DistError::Rendezvous(refused)),
            Err(e) => e,
        };
        if Instant::now() + RETRY >= deadline {
            return Err(DistError::Rendezvous(format!(
                "rank {rank} timed out reaching rank 0 at {addr}:{port} ({last_error})"
            )));
        }
        std::thread::sleep(RETRY);
    }
}

/// One attempt. `Err`: worth retrying; `Ok(Err)`: rank 0 refused this rank.
fn try_fetch(
    addr: &str,
    port: u16,
    rank: usize,
    world: usize,
    deadline: Instant,
) -> Result<Result<[u8; ID_BYTES], String>, String> {
    let addrs: Vec<SocketAddr> = (addr, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {addr}: {e}"))?
        .collect();
    let target = addrs
        .first()
        .ok_or_else(|| format!("{addr} resolves to no address"))?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let mut stream = TcpStream::connect_timeout(target, left.min(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(left.min(Duration::from_secs(30))))
        .map_err(|e| e.to_string())?;
    let mut req = Vec::with_capacity(16);
    req.extend_from_slice(MAGIC);
    req.extend_from_slice(&(world as u32).to_le_bytes());
    req.extend_from_slice(&(rank as u32).to_le_bytes());
    stream.write_all(&req).map_err(|e| e.to_string())?;
    let mut head = [0u8; 9];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    if &head[..8] != MAGIC {
        return Ok(Err(format!(
            "{addr}:{port} is not a losatok rank 0 (another service on MASTER_PORT?)"
        )));
    }
    if head[8] == 0 {
        let mut id = [0u8; ID_BYTES];
        stream.read_exact(&mut id).map_err(|e| e.to_string())?;
        return Ok(Ok(id));
    }
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut msg = vec![0u8; u16::from_le_bytes(len) as usize];
    stream.read_exact(&mut msg).map_err(|e| e.to_string())?;
    Ok(Err(format!(
        "rank 0 refused rank {rank}: {}",
        String::from_utf8_lossy(&msg)
    )))
}

fn error_reply(reason: &str) -> Vec<u8> {
    let bytes = &reason.as_bytes()[..reason.len().min(4096)];
    let mut reply = Vec::with_capacity(11 + bytes.len());
    reply.extend_from_slice(MAGIC);
    reply.push(1);
    reply.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    reply.extend_from_slice(bytes);
    reply
}

fn abbreviate(items: &[String]) -> String {
    if items.len() <= 8 {
        items.join(", ")
    } else {
        format!("{} … ({} in all)", items[..8].join(", "), items.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local_listener() -> (TcpListener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    fn soon(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[test]
    fn every_rank_receives_rank_0s_id_whoever_starts_first() {
        let (listener, port) = local_listener();
        let world = 5;
        let mut id = [0u8; ID_BYTES];
        for (i, b) in id.iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        // the other ranks start before rank 0 serves: they retry
        let clients: Vec<_> = (1..world)
            .map(|rank| std::thread::spawn(move || fetch("127.0.0.1", port, rank, world, soon(20))))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        serve(&listener, world, &id, soon(20)).unwrap();
        for c in clients {
            assert_eq!(c.join().unwrap().unwrap(), id);
        }
    }

    #[test]
    fn a_rank_with_another_world_size_is_refused_on_both_sides() {
        let (listener, port) = local_listener();
        let client = std::thread::spawn(move || fetch("127.0.0.1", port, 1, 3, soon(20)));
        let e = serve(&listener, 2, &[1; ID_BYTES], soon(20))
            .unwrap_err()
            .to_string();
        assert!(e.contains("WORLD_SIZE=3, rank 0 has 2"), "{e}");
        let e = client.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("rank 0 refused rank 1"), "{e}");
    }

    #[test]
    fn a_duplicate_rank_is_refused() {
        let (listener, port) = local_listener();
        let server = std::thread::spawn(move || serve(&listener, 3, &[9; ID_BYTES], soon(20)));
        assert_eq!(
            fetch("127.0.0.1", port, 1, 3, soon(20)).unwrap(),
            [9; ID_BYTES]
        );
        let e = fetch("127.0.0.1", port, 1, 3, soon(20))
            .unwrap_err()
            .to_string();
        assert!(e.contains("connected twice"), "{e}");
        assert!(server.join().unwrap().is_err());
    }

    #[test]
    fn strangers_are_ignored_and_missing_ranks_time_out() {
        let (listener, port) = local_listener();
        let server = std::thread::spawn(move || {
            serve(
                &listener,
                3,
                &[2; ID_BYTES],
                Instant::now() + Duration::from_secs(2),
            )
        });
        // a health check that sends garbage
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        drop(s);
        assert_eq!(
            fetch("127.0.0.1", port, 2, 3, soon(20)).unwrap(),
            [2; ID_BYTES]
        );
        let e = server.join().unwrap().unwrap_err().to_string();
        assert!(e.contains("timed out waiting for rank(s) 1"), "{e}");
    }

    #[test]
    fn nobody_listening_times_out_with_the_address() {
        let (listener, port) = local_listener();
        drop(listener);
        let e = fetch(
            "127.0.0.1",
            port,
            1,
            2,
            Instant::now() + Duration::from_millis(500),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    #[test]
    fn share_id_through_the_environment() {
        let (listener, port) = local_listener();
        drop(listener); // free the port for rank 0's own listener
        let env = |rank| DistEnv {
            rank,
            world_size: 3,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
            source: super::super::EnvSource::Torchrun,
        };
        let handles: Vec<_> = (0..3)
            .map(|r| {
                let e = env(r);
                std::thread::spawn(move || {
                    share_id(&e, || Ok([r as u8 + 40; ID_BYTES]), Duration::from_secs(20))
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap(), [40; ID_BYTES]);
        }
    }
}
