package wasm

// The test modules are written in WAT; their .wasm builds are committed so
// the tests need no toolchain. Regenerate them with wabt's wat2wasm (the
// Debian package wabt):
//go:generate sh -c "cd testdata && for f in *.wat; do wat2wasm --enable-all $DOLLAR{f} -o $DOLLAR{f%.wat}.wasm; done"
