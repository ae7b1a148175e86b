from services.router.wiring import main

main()
