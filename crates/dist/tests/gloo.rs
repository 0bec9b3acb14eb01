//! The c10d Gloo engine with two real processes: this test binary runs itself once per rank
//! (`child_*` tests do their part only when `RLVR_DIST_CHILD` is set) with the torchrun variables.

use rlvr_dist::{join, Collective, WorldEnv};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};
use tch::{Kind, Tensor};

/// A free local port for a rendezvous.
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the test `name` of this binary as rank `rank` of `world` (rendezvous at `port`, the
/// collective timeout `timeout_s`).
fn spawn_rank(name: &str, rank: usize, world: usize, port: u16, timeout_s: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("RLVR_DIST_CHILD", "1")
        .env("RLVR_DIST_TIMEOUT", timeout_s.to_string())
        .env("RANK", rank.to_string())
        .env("LOCAL_RANK", rank.to_string())
        .env("WORLD_SIZE", world.to_string())
        .env("MASTER_ADDR", "127.0.0.1")
        .env("MASTER_PORT", port.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs the test `name` of this binary as `world` ranks with `timeout_s`; returns each output.
fn run_ranks(name: &str, world: usize, timeout_s: u64) -> Vec<Output> {
    let port = free_port();
    let children: Vec<Child> = (0..world)
        .map(|rank| spawn_rank(name, rank, world, port, timeout_s))
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect()
}

fn child() -> Option<(Box<dyn Collective>, WorldEnv)> {
    std::env::var("RLVR_DIST_CHILD").ok()?;
    let env = WorldEnv::from_env().unwrap();
    let secs: u64 = std::env::var("RLVR_DIST_TIMEOUT").unwrap().parse().unwrap();
    Some((join(&env, Duration::from_secs(secs), None).unwrap(), env))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn child_collectives() {
    let Some((world, env)) = child() else { return };
    assert_eq!((world.rank(), world.world_size()), (env.rank, 2));
    let r = world.rank() as f32;
    // All-reduce: [1, 2, 3] + 10 * rank summed over ranks 0 and 1.
    let mut t = Tensor::from_slice(&[1.0f32 + 10.0 * r, 2.0 + 10.0 * r, 3.0 + 10.0 * r]);
    world.all_reduce_sum(&mut t).unwrap();
    assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![12.0, 14.0, 16.0]);
    // Broadcast from rank 1.
    let mut b = Tensor::from_slice(&[r, r]).to_kind(Kind::Double);
    world.broadcast(&mut b, 1).unwrap();
    assert_eq!(Vec::<f64>::try_from(&b).unwrap(), vec![1.0, 1.0]);
    // All-gather of vectors of different lengths.
    let local: Vec<f64> = (0..=world.rank()).map(|i| i as f64 + 0.5).collect();
    let all = world.all_gather(&local).unwrap();
    assert_eq!(all, vec![vec![0.5], vec![0.5, 1.5]]);
    assert_eq!(world.sum(&[1.0, r as f64]).unwrap(), vec![2.0, 1.0]);
    // Reduce-scatter: rank r keeps row r of the sum of every rank's [2, 3] buffer.
    let rows =
        Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).view([2, 3]) * (1.0 + r as f64);
    let mine = world.reduce_scatter_tensor(&rows).unwrap();
    let want: Vec<f32> = [[3.0, 6.0, 9.0], [12.0, 15.0, 18.0]][world.rank()].to_vec();
    assert_eq!(Vec::<f32>::try_from(&mine).unwrap(), want);
    let mine = world
        .reduce_scatter_tensor(&rows.to_kind(Kind::BFloat16))
        .unwrap();
    assert_eq!(mine.kind(), Kind::BFloat16);
    assert_eq!(
        Vec::<f32>::try_from(&mine.to_kind(Kind::Float)).unwrap(),
        want
    );
    assert!(world.reduce_scatter_tensor(&rows.view([3, 2])).is_err());
    // Started gathers (a prefetch): two in flight and an all-reduce between, waited in order.
    let first = world
        .all_gather_tensor_start(&Tensor::from_slice(&[r, r + 0.5]))
        .unwrap();
    let second = world
        .all_gather_tensor_start(&Tensor::from_slice(&[10.0 + r]).to_kind(Kind::BFloat16))
        .unwrap();
    let mut t = Tensor::from_slice(&[1.0f32]);
    world.all_reduce_sum(&mut t).unwrap();
    assert_eq!(Vec::<f32>::try_from(&t).unwrap(), vec![2.0]);
    let first = first.wait().unwrap();
    assert_eq!(first.size(), vec![2, 2]);
    assert_eq!(
        Vec::<f32>::try_from(&first.view([-1])).unwrap(),
        vec![0.0, 0.5, 1.0, 1.5]
    );
    let second = second.wait().unwrap();
    assert_eq!(second.kind(), Kind::BFloat16);
    assert_eq!(
        Vec::<f32>::try_from(&second.to_kind(Kind::Float).view([-1])).unwrap(),
        vec![10.0, 11.0]
    );
    // One dropped without waiting still completes: the next collective lines up.
    drop(
        world
            .all_gather_tensor_start(&Tensor::from_slice(&[r]))
            .unwrap(),
    );
    let again = world
        .all_gather_tensor(&Tensor::from_slice(&[2.0 * r]))
        .unwrap();
    assert_eq!(
        Vec::<f32>::try_from(&again.view([-1])).unwrap(),
        vec![0.0, 2.0]
    );
    world.barrier().unwrap();
    println!("rank {} ok", world.rank());
}

#[test]
fn two_ranks_sum_broadcast_and_gather() {
    let outs = run_ranks("child_collectives", 2, 30);
    for (rank, o) in outs.iter().enumerate() {
        assert!(o.status.success(), "rank {rank}: {}", text(o));
        assert!(text(o).contains(&format!("rank {rank} ok")), "{}", text(o));
    }
}

#[test]
fn child_peer_dies() {
    let Some((world, _)) = child() else { return };
    world.barrier().unwrap();
    if world.rank() == 1 {
        std::process::exit(3);
    }
    let t0 = Instant::now();
    let mut t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
    let err = world.all_reduce_sum(&mut t).unwrap_err().to_string();
    println!("after {:.1} s: {err}", t0.elapsed().as_secs_f64());
    assert!(err.contains("rank 0 of 2: all-reduce failed"), "{err}");
    assert!(
        err.contains("rank 1 stopped (no heartbeat"),
        "names the dead rank: {err}"
    );
}

/// A rank that dies makes the other's next collective fail (well before the 20 s timeout)
/// instead of hanging, naming the rank that stopped.
#[test]
fn a_dead_peer_fails_the_collective_instead_of_hanging() {
    let t0 = Instant::now();
    let outs = run_ranks("child_peer_dies", 2, 20);
    assert_eq!(outs[1].status.code(), Some(3), "{}", text(&outs[1]));
    assert!(outs[0].status.success(), "{}", text(&outs[0]));
    assert!(t0.elapsed() < Duration::from_secs(60));
}

#[test]
fn child_peer_hangs() {
    let Some((world, _)) = child() else { return };
    world.barrier().unwrap();
    if world.rank() == 1 {
        std::thread::sleep(Duration::from_secs(14));
        return;
    }
    let t0 = Instant::now();
    let mut t = Tensor::ones([4], (Kind::Float, tch::Device::Cpu));
    let err = world.all_reduce_sum(&mut t).unwrap_err().to_string();
    let secs = t0.elapsed().as_secs_f64();
    println!("after {secs:.1} s: {err}");
    assert!(err.contains("all-reduce failed"), "{err}");
    // The 3 s timeout, then up to 5 s looking for a rank without heartbeat (rank 1 is only
    // slow here: its heartbeat goes on, so no rank is named).
    assert!(secs < 12.0, "took {secs} s");
    assert!(!err.contains("stopped (no heartbeat"), "{err}");
}

/// A rank that stops answering makes the other's collective fail at the timeout (3 s here).
#[test]
fn a_hung_peer_fails_the_collective_at_the_timeout() {
    let outs = run_ranks("child_peer_hangs", 2, 3);
    assert!(outs[0].status.success(), "{}", text(&outs[0]));
}

#[test]
fn the_rendezvous_times_out_when_a_rank_never_comes() {
    let port = free_port();
    let env = WorldEnv {
        rank: 0,
        world_size: 2,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: port,
    };
    let t0 = Instant::now();
    let err = join(&env, Duration::from_secs(2), None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("rank 0 of 2: rendezvous at 127.0.0.1"),
        "{err}"
    );
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
}

#[test]
fn child_world_size_mismatch() {
    if std::env::var("RLVR_DIST_CHILD").is_err() {
        return;
    }
    let env = WorldEnv::from_env().unwrap();
    // Far longer than the rendezvous takes on a loaded machine: the test tells "at once" from
    // "at the timeout".
    let timeout = Duration::from_secs(60);
    match join(&env, timeout, None) {
        Ok(_) => println!("joined"),
        Err(e) => println!("failed: {e}"),
    }
}

#[test]
fn ranks_with_different_world_sizes_are_told_at_once() {
    // Rank 0 says 2, rank 1 says 3: both learn it at the rendezvous, not after the timeout.
    let port = free_port();
    let start = Instant::now();
    let children: Vec<Child> = [(0, 2), (1, 3)]
        .into_iter()
        .map(|(rank, world)| spawn_rank("child_world_size_mismatch", rank, world, port, 10))
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        let out = text(&o);
        assert!(out.contains("WORLD_SIZE differs between ranks"), "{out}");
    }
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
}
