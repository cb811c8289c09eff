"""pprof's profile.proto and the message classes protoc generates from it (`make proto`)."""
