/* steadyfs entry point (work in progress). */
#include <stdio.h>

int main(void)
{
	fprintf(stderr, "steadyfs: not built yet\n");
	return 3;
}
