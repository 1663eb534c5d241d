//go:build ignore

// descset reads the base64 FileDescriptorProtos of E2B's envd services,
// one a line, and writes a FileDescriptorSet of them with their one
// import, for protoc --descriptor_set_in (see generate.go).
package main

import (
	"bufio"
	"encoding/base64"
	"os"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func main() {
	set := &descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{protodesc.ToFileDescriptorProto(timestamppb.File_google_protobuf_timestamp_proto)}}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		b, err := base64.RawStdEncoding.DecodeString(sc.Text())
		if err != nil {
			panic(err)
		}
		fd := &descriptorpb.FileDescriptorProto{}
		if err := proto.Unmarshal(b, fd); err != nil {
			panic(err)
		}
		if fd.GetName() == "filesystem/filesystem.proto" {
			// The JS embedding passes its imports beside the descriptor.
			fd.Dependency = []string{"google/protobuf/timestamp.proto"}
		}
		set.File = append(set.File, fd)
	}
	out, _ := proto.Marshal(set)
	os.Stdout.Write(out)
}
