package volume

// UseHelperImage makes helper containers come from image instead of
// HelperImage until restore is called, so that a test can remove its
// image without disturbing other runs on the same engine.
func UseHelperImage(image string) (restore func()) {
	old := helperImage
	helperImage = image
	return func() { helperImage = old }
}
