// ulysses command line (placeholder until the CLI lands in this same issue).
#include <cstdio>
int main() { std::puts("ulysses"); return 0; }
