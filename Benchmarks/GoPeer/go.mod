module fiberstacks/gopeer

go 1.18
