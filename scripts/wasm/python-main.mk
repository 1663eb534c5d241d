# python-main.mk: links python.wasm with scripts/wasm/python-main.c as its
# main, a WASI reactor (see that file), from CPython's own build tree.
# Included after CPython's Makefile, whose variables it uses, so the link
# line is the one CPython's own python.wasm rule runs with another main:
#
#   make -f Makefile -f python-main.mk SANDBOXD_MAIN=.../python-main.c python-sandboxd.wasm

Programs/sandboxd-main.o: $(SANDBOXD_MAIN)
	$(CC) -c $(PY_CORE_CFLAGS) -o $@ $(SANDBOXD_MAIN)

python-sandboxd.wasm: Programs/sandboxd-main.o $(LINK_PYTHON_DEPS)
	$(LINKCC) $(PY_CORE_LDFLAGS) $(LINKFORSHARED) -mexec-model=reactor -o $@ \
		Programs/sandboxd-main.o $(LINK_PYTHON_OBJS) $(LIBS) $(MODLIBS) $(SYSLIBS)
