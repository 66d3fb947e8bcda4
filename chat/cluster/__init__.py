"""A cluster of nodes sharing one room through Redis (txredisapi)."""
