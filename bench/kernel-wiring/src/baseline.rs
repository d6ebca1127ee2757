//! Size baseline: the same std-only scaffolding as the benchmark, with no kernel adapter code.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let t = std::time::Instant::now();
    println!("{} args, {:?}", args.len(), t.elapsed());
}
