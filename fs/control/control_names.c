/*
 * control_names: the fixed names .control/ counts by, read by both the
 * counting side (control.c) and the rendering side (control_render.c).
 * Pure data: kept apart so that neither of the two reaches into the
 * other for them (the renderer is called by control.c and calls nothing
 * of it back). Declared in control_int.h.
 */
#include "control_int.h"

const char *const ctl_ops[CTL_NOPS] = {
	"lookup", "getattr", "setattr", "readlink", "mkdir", "unlink", "rmdir",
	"symlink", "rename", "link", "open", "create", "read", "write", "flush",
	"release", "fsync", "opendir", "readdir", "releasedir", "statfs",
	"forget", "other",
};

const double ctl_bounds[CTL_NBOUNDS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 20, 30, 60,
};

const char *const ctl_event_types[EV_NTYPES] = {
	"state", "session", "error", "data", "shadowed", "restart",
	"invalid_state",
};
