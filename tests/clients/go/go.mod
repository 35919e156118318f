module grantshift-test-clients/gsclient

go 1.19
