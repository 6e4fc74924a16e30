fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/raft.proto");
    println!("cargo:rerun-if-changed=proto/api.proto");
    println!("cargo:rerun-if-changed=proto/kubelet.proto");
    tonic_prost_build::configure().compile_protos(
        &["proto/raft.proto", "proto/api.proto", "proto/kubelet.proto"],
        &["proto"],
    )?;
    Ok(())
}
