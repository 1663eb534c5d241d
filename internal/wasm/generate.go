package wasm

// The test modules are written in WAT; their .wasm builds are committed so
// the tests need no toolchain. Regenerate them with wabt's wat2wasm (the
// Debian package wabt). Its default features (reference types, bulk
// memory) are all they use; --enable-all would also turn on typed function
// references, under which wabt 1.0.32 refuses (ref.func $f) where a
// funcref is expected (bigtable.wat, tablefill.wat):
//go:generate sh -c "cd testdata && for f in *.wat; do wat2wasm $DOLLAR{f} -o $DOLLAR{f%.wat}.wasm; done"
