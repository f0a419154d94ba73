package credential

// Companions are the non-secret files a CLI in a fresh container needs
// beside its login (design brief §2), by file name. They are written into a
// copy only when absent, never over a file the container's CLI wrote.
//
//   - Claude Code shows its onboarding in interactive mode unless its
//     config file says it is done. The file is generated, never copied from
//     the host: the host's .claude.json carries installMethod (wrong inside
//     a container) and the user's project list. Claude reads it as
//     $CLAUDE_CONFIG_DIR/.claude.json, so it takes effect when the container
//     sets CLAUDE_CONFIG_DIR to the mounted copy directory.
//   - Gemini CLI needs settings.json to pick the Google login rather than
//     ask which one to use.
func Companions(k Kind) map[string][]byte {
	switch k.Name() {
	case "claude":
		return map[string][]byte{".claude.json": []byte("{\n  \"hasCompletedOnboarding\": true\n}\n")}
	case "gemini":
		return map[string][]byte{"settings.json": []byte("{\n  \"security\": {\n    \"auth\": {\n      \"selectedType\": \"oauth-personal\"\n    }\n  }\n}\n")}
	}
	return nil
}
