from misp_ti.cli import main

main()
