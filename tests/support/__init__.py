"""Test infrastructure: real OpenSSH sshd servers on loopback and real release trees."""
