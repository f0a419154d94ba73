//go:build !linux

package main

func lockBirthMs(string) (float64, bool) { return 0, false }
