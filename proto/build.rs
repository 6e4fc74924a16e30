fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/raft.proto");
    println!("cargo:rerun-if-changed=proto/api.proto");
    println!("cargo:rerun-if-changed=proto/kubelet.proto");
    // kubelet.proto reuses api.proto's log and exec frames: they are the
    // `api` module's types, not generated a second time. This pass also
    // writes a partial `ferrokube.api.v1.rs` (the imported file's service
    // only), so it runs first and the full api pass below replaces it.
    tonic_prost_build::configure()
        .extern_path(".ferrokube.api.v1", "crate::api")
        .compile_protos(&["proto/kubelet.proto"], &["proto"])?;
    tonic_prost_build::configure()
        .compile_protos(&["proto/raft.proto", "proto/api.proto"], &["proto"])?;
    Ok(())
}
