"""Finding peers: BEP 14 local service discovery (`lsd`, sans-I/O, and its asyncio driver), the peer store
(`peerstore`, fed by `peerstore_driver`, dialled through by `peer_dialer`) and signed peer records in the DHT
(`peer_record`, sans-I/O, and `peer_record_driver`)."""
