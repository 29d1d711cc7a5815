package router

import (
	"hellochat/apps/chat/wire"
	pb "hellochat/proto/roompb"
)

// SubprotocolV2 selects our extended protocol (docs/protocol.md).
const SubprotocolV2 = wire.SubprotocolV2

func toWire(m *pb.ChatMessage) wire.Message {
	return wire.Message{Seq: m.Seq, ID: m.ClientId, Name: m.Name, Text: m.Text, TS: m.TsMs}
}

func historyFrame(msgs []*pb.ChatMessage, more bool, before uint64) []byte {
	out := make([]wire.Message, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, toWire(m))
	}
	return wire.History(out, more, before)
}
