module vxdb.dev/vx

go 1.24
