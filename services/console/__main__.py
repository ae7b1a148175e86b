from services.console.wiring import main

main()
