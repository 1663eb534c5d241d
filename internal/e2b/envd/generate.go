// Package envd holds the Go code of E2B's sandbox agent (envd) Connect
// services, filesystem.Filesystem and process.Process, generated from the
// descriptors E2B's own SDK embeds, so the wire format is the SDK's.
//
// envd.binpb is a FileDescriptorSet of filesystem/filesystem.proto and
// process/process.proto as the npm package e2b@2.51.0 embeds them
// (dist/index.js, the base64 arguments of fileDesc), plus
// google/protobuf/timestamp.proto. descset.go rebuilds it from those
// strings; protoc then reads the set instead of .proto files.
package envd

//go:generate sh -c "grep -o 'fileDesc)(\"[^\"]*\"' $E2B_SDK/dist/index.js | sed 's/fileDesc)(\"//; s/\"$//' | go run descset.go > envd.binpb"
//go:generate protoc --descriptor_set_in=envd.binpb --go_out=. --go_opt=module=github.com/sandboxd/sandboxd/internal/e2b/envd --go_opt=Mfilesystem/filesystem.proto=github.com/sandboxd/sandboxd/internal/e2b/envd/filesystem --go_opt=Mprocess/process.proto=github.com/sandboxd/sandboxd/internal/e2b/envd/process --connect-go_out=. --connect-go_opt=module=github.com/sandboxd/sandboxd/internal/e2b/envd --connect-go_opt=Mfilesystem/filesystem.proto=github.com/sandboxd/sandboxd/internal/e2b/envd/filesystem --connect-go_opt=Mprocess/process.proto=github.com/sandboxd/sandboxd/internal/e2b/envd/process filesystem/filesystem.proto process/process.proto
