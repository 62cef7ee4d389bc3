package backend

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childParentEnv makes the test binary the parent of TestStartChildEndsWithItsParent: it starts a child with
// StartChild, prints the child's pid and waits to be killed.
const childParentEnv = "WIVAUDIT_TEST_CHILD_PARENT"

func TestMain(m *testing.M) {
	if os.Getenv(childParentEnv) != "" {
		cmd := exec.Command("sleep", "600")
		if _, err := StartChild(cmd); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(cmd.Process.Pid)
		select {}
	}
	os.Exit(m.Run())
}

// TestStartChildEndsWithItsParent: a child started with StartChild ends when its parent is killed without
// stopping it (as the trial was by SIGPIPE), rather than staying on with the parent's ports and locks.
func TestStartChildEndsWithItsParent(t *testing.T) {
	parent := exec.Command(os.Args[0], "-test.run=^$")
	parent.Env = append(os.Environ(), childParentEnv+"=1")
	parent.Stderr = os.Stderr
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		parent.Process.Kill()
		parent.Wait()
		t.Fatalf("the parent did not print its child's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	child, err := Watch(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer child.Close()
	parent.Process.Kill()
	parent.Wait()
	// A bound, not a wait for success: nothing else stops the child.
	if ended, err := child.Ended(time.Minute); err != nil || !ended {
		child.Kill()
		t.Errorf("the child %d still runs a minute after its parent was killed (%v)", pid, err)
	}
}
