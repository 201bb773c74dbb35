//! Generates the CRI v1 client (RuntimeService, ImageService) from the
//! vendored proto/api.proto. Needs protoc (/usr/bin/protoc, or $PROTOC).

fn main() -> std::io::Result<()> {
    tonic_prost_build::configure()
        // A client only: the tests talk to containerd's CRI, never serve it.
        .build_server(false)
        .build_client(true)
        .compile_protos(&["proto/api.proto"], &["proto"])
}
