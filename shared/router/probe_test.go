package router
import ("testing"; "encoding/json")
func TestProbe(t *testing.T) {
	c, err := LoadDir("../../config")
	if err != nil { t.Fatal(err) }
	b, _ := json.MarshalIndent(c, "", " ")
	t.Log(string(b))
}
