module github.com/postoffice-mail/postoffice

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0 // indirect
	github.com/GehirnInc/crypt v0.0.0-20230320061759-8cc1b52080c5 // indirect
	github.com/emersion/go-maildir v0.6.0 // indirect
	github.com/google/go-cmp v0.7.0 // indirect
	golang.org/x/crypto v0.59.0 // indirect
)
